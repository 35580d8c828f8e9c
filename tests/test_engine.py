"""The engine, called directly: each op checked by its effect on images with known content and markers, and
each range bound honoured. Determinism has its own file, test_determinism.py."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import pytest
from augserve.engine import Pipeline, Variant
from augserve.errors import ServiceError
from augserve.preflight import check_fits, check_sizes
from augserve_client.protocol.errors import ErrorCode
from augserve_client.protocol.spec import Spec

SEEDS = range(40)


def run(spec: dict[str, Any], image: np.ndarray, seed: int = 0) -> Variant:
    return Pipeline(Spec.model_validate(spec))(image, seed)


def noise(height: int = 40, width: int = 60, seed: int = 0) -> np.ndarray:
    """Every pixel different from its neighbours: equality with a rearrangement proves the rearrangement."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def marked(height: int, width: int, row: int, col: int) -> np.ndarray:
    """Black, with a white 3x3 marker centred on (row, col)."""
    image = np.zeros((height, width, 3), np.uint8)
    image[row - 1 : row + 2, col - 1 : col + 2] = 255
    return image


def centroid(image: np.ndarray) -> tuple[float, float]:
    weight = image[..., 0].astype(np.float64)
    rows, cols = np.indices(weight.shape)
    return float((rows * weight).sum() / weight.sum()), float((cols * weight).sum() / weight.sum())


def one_step(variant: Variant) -> dict[str, Any]:
    assert len(variant.applied) == 1, variant.applied
    return variant.applied[0]


# --- reflect -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("horizontal", "vertical", "expected"),
    [(True, False, lambda a: a[:, ::-1]), (False, True, lambda a: a[::-1]), (True, True, lambda a: a[::-1, ::-1])],
    ids=["horizontal", "vertical", "both"],
)
def test_reflect_reverses_columns_rows_or_both(horizontal: bool, vertical: bool, expected: Any) -> None:
    image = noise()
    variant = run({"ops": [{"op": "reflect", "horizontal": horizontal, "vertical": vertical, "p": 1}]}, image)
    np.testing.assert_array_equal(variant.image, expected(image))
    axes = [step["axis"] for step in variant.applied]
    assert axes == [axis for axis, on in (("horizontal", horizontal), ("vertical", vertical)) if on]


def test_reflect_on_a_real_photo(photos: list[np.ndarray]) -> None:
    variant = run({"ops": [{"op": "reflect", "p": 1}]}, photos[1])
    np.testing.assert_array_equal(variant.image, photos[1][:, ::-1])


def test_reflect_metadata_says_exactly_which_flips_happened() -> None:
    image = noise()
    for seed in SEEDS:
        variant = run({"ops": [{"op": "reflect", "horizontal": True, "vertical": True, "p": 0.5}]}, image, seed)
        expected = image
        axes = {step["axis"] for step in variant.applied}
        if "horizontal" in axes:
            expected = expected[:, ::-1]
        if "vertical" in axes:
            expected = expected[::-1]
        np.testing.assert_array_equal(variant.image, expected)


def test_horizontal_and_vertical_flips_are_drawn_independently() -> None:
    """With one seed per op they would always agree; the shared generator makes them independent."""
    pipeline = Pipeline(Spec.model_validate({"ops": [{"op": "reflect", "horizontal": True, "vertical": True}]}))
    image = noise(8, 8)
    outcomes = {frozenset(step["axis"] for step in pipeline(image, seed).applied) for seed in range(200)}
    assert outcomes == {
        frozenset(),
        frozenset({"horizontal"}),
        frozenset({"vertical"}),
        frozenset(["horizontal", "vertical"]),
    }


# --- rotate ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_right_angles_are_counter_clockwise_quarter_turns(angle: int) -> None:
    image = noise(40, 60)
    variant = run({"ops": [{"op": "rotate", "right_angles": [angle], "p": 1}]}, image)
    np.testing.assert_array_equal(variant.image, np.rot90(image, angle // 90))
    assert one_step(variant)["angle"] == angle


def test_rotate_90_moves_the_top_right_marker_to_the_top_left() -> None:
    """Counter-clockwise, as seen on screen: what was at the right edge of the top row ends up at the top of
    the left column."""
    image = marked(40, 60, row=5, col=50)
    variant = run({"ops": [{"op": "rotate", "right_angles": [90], "p": 1}]}, image)
    assert variant.image.shape == (60, 40, 3)
    assert centroid(variant.image) == (60 - 1 - 50, 5)


def test_right_angles_use_only_the_listed_angles() -> None:
    image = noise(10, 16)
    pipeline = Pipeline(Spec.model_validate({"ops": [{"op": "rotate", "right_angles": [90, 270], "p": 1}]}))
    angles = set()
    for seed in SEEDS:
        variant = pipeline(image, seed)
        angle = one_step(variant)["angle"]
        np.testing.assert_array_equal(variant.image, np.rot90(image, angle // 90))
        angles.add(angle)
    assert angles == {90, 270}


def rotated_position(row: float, col: float, height: int, width: int, degrees: float) -> tuple[float, float]:
    """Where a pixel goes when the picture turns counter-clockwise (as seen on screen) about its centre."""
    center_row, center_col = (height - 1) / 2, (width - 1) / 2
    right, up = col - center_col, center_row - row
    theta = math.radians(degrees)
    right, up = right * math.cos(theta) - up * math.sin(theta), right * math.sin(theta) + up * math.cos(theta)
    return center_row - up, center_col + right


@pytest.mark.parametrize("degrees", [30, -30, 45])
def test_a_positive_angle_turns_the_image_counter_clockwise(degrees: float) -> None:
    height, width, row, col = 81, 101, 20, 70
    image = marked(height, width, row, col)
    spec = {"ops": [{"op": "rotate", "angle": [degrees, degrees], "p": 1, "interpolation": "nearest"}]}
    variant = run(spec, image)
    assert variant.image.shape == image.shape  # a range rotation keeps the shape
    assert one_step(variant)["angle"] == pytest.approx(degrees)
    expected = rotated_position(row, col, height, width, degrees)
    assert centroid(variant.image) == pytest.approx(expected, abs=1.5)
    mirrored = rotated_position(row, col, height, width, -degrees)
    assert math.dist(centroid(variant.image), mirrored) > 10  # the opposite sense is far away


def test_the_applied_angle_always_lies_in_the_range() -> None:
    pipeline = Pipeline(Spec.model_validate({"ops": [{"op": "rotate", "angle": [5, 10], "p": 1}]}))
    image = noise(16, 16)
    angles = [one_step(pipeline(image, seed))["angle"] for seed in range(100)]
    assert all(5 <= angle <= 10 for angle in angles)
    assert min(angles) < 6 and max(angles) > 9  # the whole range is used


@pytest.mark.parametrize(
    ("border", "fill", "corner"),
    [("constant", 200, (200, 200, 200)), ("constant", [10, 20, 30], (10, 20, 30)), ("replicate", 0, (50, 50, 50))],
)
def test_rotation_fills_the_corners_per_border(border: str, fill: Any, corner: tuple[int, int, int]) -> None:
    image = np.full((41, 41, 3), 50, np.uint8)
    spec = {"ops": [{"op": "rotate", "angle": [45, 45], "p": 1, "border": border, "fill": fill}]}
    variant = run(spec, image)
    assert tuple(variant.image[0, 0]) == corner
    assert tuple(variant.image[20, 20]) == (50, 50, 50)


# --- crop --------------------------------------------------------------------------------------------------


def test_random_crop_cuts_the_box_it_reports_at_random_positions() -> None:
    image = noise(40, 60)
    pipeline = Pipeline(Spec.model_validate({"ops": [{"op": "crop", "mode": "random", "size": [20, 30]}]}))
    boxes = set()
    for seed in SEEDS:
        variant = pipeline(image, seed)
        x0, y0, x1, y1 = one_step(variant)["box"]
        assert (y1 - y0, x1 - x0) == (20, 30) and min(x0, y0) >= 0 and x1 <= 60 and y1 <= 40
        np.testing.assert_array_equal(variant.image, image[y0:y1, x0:x1])
        boxes.add((x0, y0))
    assert len(boxes) > 10


@pytest.mark.parametrize(("height", "width"), [(40, 60), (41, 61)])
def test_center_crop_is_centred(height: int, width: int) -> None:
    image = noise(height, width)
    variant = run({"ops": [{"op": "crop", "mode": "center", "size": [20, 30]}]}, image)
    x0, y0, x1, y1 = one_step(variant)["box"]
    assert abs(x0 - (width - x1)) <= 1 and abs(y0 - (height - y1)) <= 1
    np.testing.assert_array_equal(variant.image, image[y0:y1, x0:x1])


@pytest.mark.parametrize(
    ("border", "fill", "numpy_pad"),
    [
        ("constant", 7, {"mode": "constant", "constant_values": 7}),
        ("replicate", 0, {"mode": "edge"}),
        ("reflect", 0, {"mode": "reflect"}),
    ],
)
@pytest.mark.parametrize("mode", ["random", "center"])
def test_a_crop_larger_than_the_image_pads_it_symmetrically(
    mode: str, border: str, fill: int, numpy_pad: dict[str, Any]
) -> None:
    image = noise(40, 60)
    spec = {"ops": [{"op": "crop", "mode": mode, "size": [50, 71], "border": border, "fill": fill}]}
    for seed in range(5):
        variant = run(spec, image, seed)
        assert variant.image.shape == (50, 71, 3)
        step = one_step(variant)
        pad = step["pad"]
        assert (pad["top"] + pad["bottom"], pad["left"] + pad["right"]) == (10, 11)
        assert abs(pad["top"] - pad["bottom"]) <= 1 and abs(pad["left"] - pad["right"]) <= 1
        padded = np.pad(image, ((pad["top"], pad["bottom"]), (pad["left"], pad["right"]), (0, 0)), **numpy_pad)
        x0, y0, x1, y1 = step["box"]
        np.testing.assert_array_equal(variant.image, padded[y0:y1, x0:x1])


def test_padding_only_the_short_side_keeps_the_random_position_on_the_long_one() -> None:
    image = noise(40, 60)
    pipeline = Pipeline(Spec.model_validate({"ops": [{"op": "crop", "size": [30, 80], "fill": [1, 2, 3]}]}))
    rows = set()
    for seed in SEEDS:
        variant = pipeline(image, seed)
        step = one_step(variant)
        assert variant.image.shape == (30, 80, 3)
        assert step["pad"] == {"top": 0, "bottom": 0, "left": 10, "right": 10}
        assert (variant.image[:, :10] == [1, 2, 3]).all() and (variant.image[:, 70:] == [1, 2, 3]).all()
        _, y0, _, y1 = step["box"]
        np.testing.assert_array_equal(variant.image[:, 10:70], image[y0:y1])
        rows.add(y0)
    assert len(rows) > 3


def test_random_resized_crop_resizes_a_box_within_scale_and_ratio() -> None:
    image = noise(100, 120)
    scale, ratio = (0.25, 0.5), (0.75, 1.5)
    spec = {"ops": [{"op": "crop", "mode": "random_resized", "size": [20, 30], "scale": scale, "ratio": ratio}]}
    pipeline = Pipeline(Spec.model_validate(spec))
    for seed in SEEDS:
        variant = pipeline(image, seed)
        assert variant.image.shape == (20, 30, 3)
        x0, y0, x1, y1 = one_step(variant)["box"]
        width, height = x1 - x0, y1 - y0
        area = width * height / (100 * 120)
        assert scale[0] * 0.95 <= area <= scale[1] * 1.05  # the window's sides are rounded to whole pixels
        assert ratio[0] * 0.95 <= width / height <= ratio[1] * 1.05
        expected = cv2.resize(image[y0:y1, x0:x1], (30, 20), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(variant.image, expected)


def test_random_resized_crop_with_an_extreme_ratio_never_cuts_an_empty_window() -> None:
    """albumentations' fallback rounds such a window to 0 pixels; ours keeps one."""
    for ratio in ([100, 1000], [0.001, 0.01]):
        spec = {"ops": [{"op": "crop", "mode": "random_resized", "size": [4, 4], "ratio": ratio}]}
        variant = run(spec, noise(10, 12))
        x0, y0, x1, y1 = one_step(variant)["box"]
        assert x1 > x0 and y1 > y0 and variant.image.shape == (4, 4, 3)


def test_check_fits_refuses_a_crop_larger_than_the_image_when_told_to() -> None:
    spec = Spec.model_validate({"ops": [{"op": "crop", "size": [50, 30], "if_smaller": "error"}]})
    with pytest.raises(ServiceError) as caught:
        check_fits(spec, 40, 60, "cat.jpg")
    error = caught.value
    assert error.code is ErrorCode.CROP_TOO_LARGE and error.code.status == 422
    assert error.details == {"field": "spec.ops[0].size", "file": "cat.jpg"}
    assert "40x60" in error.message and "50x30" in error.message
    check_fits(spec, 50, 30, "exact.jpg")  # the same size fits


def test_check_fits_follows_the_shapes_earlier_ops_can_produce() -> None:
    crop = {"op": "crop", "mode": "center", "size": [50, 30], "if_smaller": "error"}
    turned = Spec.model_validate({"ops": [{"op": "rotate", "right_angles": [90], "p": 1}, crop]})
    check_fits(turned, 40, 60, "a.png")  # always 60x40 by the time it reaches the crop
    maybe_turned = Spec.model_validate({"ops": [{"op": "rotate", "right_angles": [90], "p": 0.5}, crop]})
    with pytest.raises(ServiceError, match=r"ops\[1\]"):
        check_fits(maybe_turned, 40, 60, "a.png")
    for lenient in ({**crop, "if_smaller": "pad"}, {**crop, "mode": "random_resized"}):
        check_fits(Spec.model_validate({"ops": [lenient]}), 4, 4, "tiny.png")


def test_check_sizes_refuses_variants_larger_than_the_pixel_limit() -> None:
    check_sizes(Spec.model_validate({"ops": [{"op": "crop", "size": [100, 100]}], "output": {"size": 100}}), 10_000)
    for spec, field in [
        ({"output": {"size": [100, 101]}}, "spec.output.size"),
        ({"ops": [{"op": "reflect"}, {"op": "crop", "size": [200, 60], "p": 0.1}]}, "spec.ops[1].size"),
    ]:
        with pytest.raises(ServiceError) as caught:
            check_sizes(Spec.model_validate(spec), 10_000)
        assert caught.value.code is ErrorCode.IMAGE_TOO_LARGE and caught.value.code.status == 413
        assert caught.value.details == {"field": field, "limit": "max_pixels", "limit_value": 10_000}


# --- shift and output --------------------------------------------------------------------------------------


def test_a_pixel_shift_moves_the_content_right_by_exactly_that_many_pixels() -> None:
    image = noise(40, 60)
    spec = {"ops": [{"op": "shift", "unit": "pixels", "x": [10, 10], "y": [0, 0], "p": 1, "fill": 9}]}
    variant = run(spec, image)
    assert one_step(variant)["translate_px"] == [10, 0]
    np.testing.assert_array_equal(variant.image[:, 10:], image[:, :-10])
    assert (variant.image[:, :10] == 9).all()


def test_a_positive_y_shift_moves_the_content_down() -> None:
    image = marked(40, 60, row=10, col=30)
    variant = run({"ops": [{"op": "shift", "unit": "pixels", "x": [0, 0], "y": [5, 5], "p": 1}]}, image)
    assert centroid(variant.image) == (15, 30)


@pytest.mark.parametrize(
    ("spec", "x_range", "y_range"),
    [
        ({"x": [0.1, 0.2], "y": [-0.2, -0.1]}, (6, 12), (-8, -4)),  # fractions of 60 wide, 40 high
        ({"unit": "pixels", "x": [-7, -3], "y": [2, 4]}, (-7, -3), (2, 4)),
    ],
    ids=["fraction", "pixels"],
)
def test_the_applied_shift_always_lies_in_the_range(
    spec: dict[str, Any], x_range: tuple[int, int], y_range: tuple[int, int]
) -> None:
    pipeline = Pipeline(Spec.model_validate({"ops": [{"op": "shift", "p": 1, **spec}]}))
    image = noise(40, 60)
    shifts = [one_step(pipeline(image, seed))["translate_px"] for seed in SEEDS]
    assert all(x_range[0] - 0.5 <= x <= x_range[1] + 0.5 for x, _ in shifts), shifts  # whole pixels
    assert all(y_range[0] - 0.5 <= y <= y_range[1] + 0.5 for _, y in shifts), shifts
    assert len({tuple(shift) for shift in shifts}) > 3


def test_output_size_resizes_every_variant_to_one_shape() -> None:
    image = noise(40, 60)
    spec = {"ops": [{"op": "rotate", "right_angles": [90], "p": 0.5}], "output": {"size": [16, 24]}}
    pipeline = Pipeline(Spec.model_validate(spec))
    for seed in range(10):
        variant = pipeline(image, seed)
        assert variant.image.shape == (16, 24, 3)
        assert variant.applied[-1] == {"op": "output", "op_index": -1, "transform": "Resize", "size": [16, 24]}
    plain = run({"output": {"size": [16, 24]}}, image)
    np.testing.assert_array_equal(plain.image, cv2.resize(image, (24, 16), interpolation=cv2.INTER_LINEAR))


# --- probability -------------------------------------------------------------------------------------------

EVERY_OP: list[dict[str, Any]] = [
    {"op": "reflect", "horizontal": True, "vertical": True},
    {"op": "rotate", "angle": [-20, 20]},
    {"op": "rotate", "right_angles": [90, 180, 270]},
    {"op": "crop", "mode": "random", "size": [20, 30]},
    {"op": "crop", "mode": "center", "size": [20, 30]},
    {"op": "crop", "mode": "random_resized", "size": [20, 30]},
    {"op": "shift", "x": [0.1, 0.2]},
    {"op": "shift", "unit": "pixels", "x": [3, 5]},
]


@pytest.mark.parametrize("op", EVERY_OP, ids=lambda op: "-".join(str(v) for v in op.values())[:40])
def test_p_0_never_applies_and_p_1_always_does(op: dict[str, Any]) -> None:
    image = noise(40, 60)
    never = Pipeline(Spec.model_validate({"ops": [{**op, "p": 0}]}))
    always = Pipeline(Spec.model_validate({"ops": [{**op, "p": 1}]}))
    steps = 2 if op["op"] == "reflect" else 1
    for seed in range(20):
        skipped = never(image, seed)
        assert skipped.applied == []
        np.testing.assert_array_equal(skipped.image, image)
        applied = always(image, seed).applied
        assert len(applied) == steps and all(step["op"] == op["op"] and step["op_index"] == 0 for step in applied)


def test_p_one_half_applies_about_half_the_time() -> None:
    pipeline = Pipeline(Spec.model_validate({"ops": [{"op": "shift", "p": 0.5}]}))
    image = noise(8, 8)
    applied = sum(bool(pipeline(image, seed).applied) for seed in range(400))
    assert 150 < applied < 250
