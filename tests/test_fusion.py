"""Deferred geometry (augserve.engine.transforms): flips and a rotation before a random resized crop are
resampled once, by the crop. Checked by effect: the same pixels as flipping first, a marked pixel where the
rotation puts it, the rotation's border and fill, and the same draws and nearly the same pixels as plain
albumentations."""

from __future__ import annotations

import random
from typing import Any

import albumentations as A
import cv2
import numpy as np
import pytest
from augserve.engine import BORDERS, Pipeline, Variant
from augserve.engine.pipeline import deferrable
from augserve_client.protocol.spec import Spec
from test_engine import centroid, marked, noise, rotated_position


def pipeline(*ops: dict[str, Any]) -> Pipeline:
    return Pipeline(Spec.model_validate({"ops": list(ops)}))


def whole(height: int, width: int, size: tuple[int, int]) -> dict[str, Any]:
    """A random resized crop whose window is always the whole image, resized to ``size``."""
    return {"op": "crop", "mode": "random_resized", "size": list(size), "scale": [1, 1], "ratio": [width / height] * 2}


def step(variant: Variant, op: str) -> dict[str, Any]:
    return next(applied for applied in variant.applied if applied["op"] == op)


@pytest.mark.parametrize(
    ("size", "tolerance"),
    [((24, 32), 0), ((97, 131), 1)],
    ids=["shrinking-exact", "growing-within-one-level"],  # OpenCV's fixed-point weights are not quite symmetric
)
def test_flips_before_the_crop_give_the_pixels_of_flipping_first(size: tuple[int, int], tolerance: int) -> None:
    image = noise(60, 80)
    crop = {"op": "crop", "mode": "random_resized", "size": list(size), "scale": [0.2, 1.0]}
    fused = pipeline({"op": "reflect", "horizontal": True, "vertical": True, "p": 0.5}, crop)
    seen = set()
    for seed in range(40):
        variant = fused(image, seed)
        axes = tuple(applied["axis"] for applied in variant.applied if applied["op"] == "reflect")
        flipped = image[:: -1 if "vertical" in axes else 1, :: -1 if "horizontal" in axes else 1]
        x_min, y_min, x_max, y_max = step(variant, "crop")["box"]
        expected = cv2.resize(flipped[y_min:y_max, x_min:x_max], size[::-1], interpolation=cv2.INTER_LINEAR)
        assert np.abs(variant.image.astype(int) - expected).max() <= tolerance
        seen.add(axes)
    assert seen == {(), ("horizontal",), ("vertical",), ("horizontal", "vertical")}


@pytest.mark.parametrize("degrees", [30, -45])
def test_a_rotation_before_the_crop_puts_a_marked_pixel_where_the_rotation_takes_it(degrees: float) -> None:
    height, width, row, col = 81, 101, 20, 70
    rotate = {"op": "rotate", "angle": [degrees, degrees], "p": 1}
    variant = pipeline(rotate, whole(height, width, (2 * height, 2 * width)))(marked(height, width, row, col), 0)
    assert step(variant, "crop")["box"] == [0, 0, width, height]
    assert step(variant, "rotate")["angle"] == pytest.approx(degrees)
    turned_row, turned_col = rotated_position(row, col, height, width, degrees)
    expected = (2 * turned_row + 0.5, 2 * turned_col + 0.5)  # x2 in cv2.resize's pixel-centre convention
    assert centroid(variant.image) == pytest.approx(expected, abs=1.5)


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "rotate", "angle": [0, 0], "p": 1}],
        [
            {"op": "reflect", "horizontal": True, "vertical": True, "p": 1},
            {"op": "rotate", "angle": [180, 180], "p": 1},
        ],
    ],
    ids=["no-turn", "flips-and-half-turn"],
)
def test_a_run_that_adds_up_to_nothing_still_cuts_the_window(ops: list[dict[str, Any]]) -> None:
    """The combined matrix is the identity when the window sits at the origin: still a window, not the image."""
    image = noise(20, 20)
    crop = {"op": "crop", "mode": "random_resized", "size": [10, 10], "scale": [0.25, 0.25], "ratio": [1, 1]}
    fused, at_origin = pipeline(*ops, crop), 0
    for seed in range(100):
        variant = fused(image, seed)
        assert variant.image.shape == (10, 10, 3)
        if step(variant, "crop")["box"] == [0, 0, 10, 10]:
            np.testing.assert_array_equal(variant.image, image[:10, :10])
            at_origin += 1
    assert at_origin > 0


@pytest.mark.parametrize(
    ("border", "fill", "corner"),
    [("constant", [10, 20, 30], (10, 20, 30)), ("replicate", 0, (50, 50, 50))],
)
def test_a_fused_rotation_fills_the_corners_per_its_border(border: str, fill: Any, corner: tuple[int, ...]) -> None:
    rotate = {"op": "rotate", "angle": [45, 45], "p": 1, "border": border, "fill": fill}
    variant = pipeline(rotate, whole(41, 41, (41, 41)))(np.full((41, 41, 3), 50, np.uint8), 0)
    assert tuple(variant.image[0, 0]) == corner
    assert tuple(variant.image[20, 20]) == (50, 50, 50)


def waves(height: int = 427, width: int = 640) -> np.ndarray:
    """A smooth image (periods of 100+ px): resampling it once or twice gives the same pixels to within a grey
    level, while a geometric error of a quarter pixel would shift them by several."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [np.sin(cols / 23 + rows / 41), np.cos(rows / 17), np.sin((cols - rows) / 31)]
    return np.dstack([127 + 100 * channel for channel in channels]).astype(np.uint8)


def plain_albumentations(border_mode: int) -> A.Compose:
    """The benchmark's chain as a trainer writes it locally, one resampling per transform."""
    rotate = A.Rotate(limit=(-15, 15), p=0.5, border_mode=border_mode, fill=0)
    crop = A.RandomResizedCrop(size=(224, 224), p=1.0)
    return A.Compose([A.HorizontalFlip(p=0.5), rotate, crop], save_applied_params=True)


def side_by_side(image: np.ndarray, seed: int, border: str) -> tuple[Variant, dict[str, Any]]:
    crop = {"op": "crop", "mode": "random_resized", "size": [224, 224]}
    rotate = {"op": "rotate", "angle": [-15, 15], "p": 0.5, "border": border}
    variant = pipeline({"op": "reflect", "p": 0.5}, rotate, crop)(image, seed)
    plain = plain_albumentations(BORDERS[border])
    plain.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return variant, plain(image=image)


def test_fused_variants_draw_what_albumentations_draws(photos: list[np.ndarray]) -> None:
    """Seed by seed, the same flips, angles and windows; without a rotation, the very same pixels."""
    unrotated = 0
    for seed in range(24):
        variant, expected = side_by_side(photos[seed % len(photos)], seed, "constant")
        names = [name for name, _ in expected["applied_transforms"]]
        assert [applied["transform"] for applied in variant.applied] == names
        assert step(variant, "crop")["box"] == list(expected["applied_transforms"][-1][1]["crop_coords"])
        if "Rotate" not in names:
            np.testing.assert_array_equal(variant.image, expected["image"])
            unrotated += 1
    assert 0 < unrotated < 24


@pytest.mark.parametrize("border", ["constant", "reflect"])
def test_fused_rotations_match_rotating_then_cropping_to_within_a_grey_level(border: str) -> None:
    image, rotated = waves(), 0
    for seed in range(16):
        variant, expected = side_by_side(image, seed, border)
        difference = np.abs(variant.image.astype(int) - expected["image"].astype(int))
        inside = difference if border == "reflect" else difference[24:-24, 24:-24]  # off the filled corners
        assert inside.mean() < 0.5 and np.percentile(inside, 99) <= 2, (seed, inside.mean())
        rotated += any(applied["op"] == "rotate" for applied in variant.applied)
    assert rotated > 0


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        ([{"op": "reflect"}, {"op": "rotate"}, {"op": "crop", "mode": "random_resized", "size": 8}], {0, 1, 2}),
        ([{"op": "rotate"}, {"op": "rotate"}, {"op": "crop", "mode": "random_resized", "size": 8}], {1, 2}),
        ([{"op": "rotate", "right_angles": [90]}, {"op": "crop", "mode": "random_resized", "size": 8}], set()),
        ([{"op": "rotate", "interpolation": "cubic"}, {"op": "crop", "mode": "random_resized", "size": 8}], set()),
        ([{"op": "reflect"}, {"op": "crop", "mode": "random_resized", "size": 8, "p": 0.5}], set()),
        ([{"op": "reflect"}, {"op": "shift"}, {"op": "crop", "mode": "random_resized", "size": 8}], set()),
        ([{"op": "reflect"}, {"op": "crop", "mode": "random", "size": 8}], set()),
        ([{"op": "reflect"}, {"op": "crop", "mode": "random_resized", "size": 8, "interpolation": "nearest"}], set()),
    ],
    ids=[
        "reflect-rotate",
        "two-rotations",
        "right-angles",
        "interpolation",
        "crop-p",
        "shift-between",
        "plain-crop",
        "nearest",
    ],
)
def test_only_a_run_that_one_resampling_reproduces_is_deferred(ops: list[dict[str, Any]], expected: set[int]) -> None:
    assert deferrable(Spec.model_validate({"ops": ops}).ops) == expected
