"""The spec models: defaults, normalisation, every validation rule, and the shapes a spec can produce."""

from __future__ import annotations

from typing import Any

import pytest
from augserve_client.protocol.spec import MAX_SHIFT_PX, Crop, Output, Reflect, Rotate, Shift, Spec, op_shapes
from pydantic import ValidationError


def test_an_empty_spec_is_version_1_with_png_output_and_no_ops() -> None:
    spec = Spec()
    assert spec.version == 1
    assert spec.ops == []
    assert spec.output == Output(size=None, interpolation="linear", format="png", quality=90)


def test_defaults_of_every_op() -> None:
    assert Reflect().model_dump() == {"op": "reflect", "p": 0.5, "horizontal": True, "vertical": False}
    rotate = Rotate()
    assert (rotate.p, rotate.angle, rotate.right_angles, rotate.border, rotate.fill) == (
        0.5,
        (-15.0, 15.0),
        None,
        "constant",
        0,
    )
    crop = Crop(size=(8, 8))
    assert (crop.p, crop.mode, crop.scale, crop.if_smaller) == (1.0, "random", (0.08, 1.0), "pad")
    assert crop.ratio == pytest.approx((3 / 4, 4 / 3))
    shift = Shift()
    assert (shift.p, shift.x, shift.y, shift.unit) == (0.5, (-0.1, 0.1), (-0.1, 0.1), "fraction")


def test_a_single_integer_size_means_a_square() -> None:
    spec = Spec.model_validate({"ops": [{"op": "crop", "size": 32}], "output": {"size": 16}})
    assert spec.ops[0].size == (32, 32)
    assert spec.output.size == (16, 16)


def test_builders_and_plain_json_are_the_same_spec() -> None:
    built = Spec(
        ops=[
            Reflect(horizontal=True, vertical=True, p=0.5),
            Rotate(angle=(-10, 10), border="reflect"),
            Crop(mode="random_resized", size=(64, 48), scale=(0.5, 1.0)),
            Shift(x=(-4, 4), y=(0, 0), unit="pixels", p=1.0),
        ],
        output=Output(size=(32, 32), format="jpeg", quality=80),
    )
    as_json = built.model_dump_json()
    assert Spec.model_validate_json(as_json) == built
    assert Spec.model_validate(built.model_dump(mode="json")) == built


def test_specs_are_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        Reflect().p = 1.0  # type: ignore[misc]


# (spec as JSON, the location pydantic reports, a fragment of the message): one row per rule.
INVALID: list[tuple[str, dict[str, Any], tuple[Any, ...], str]] = [
    ("range min > max", {"ops": [{"op": "rotate", "angle": [10, 5]}]}, ("ops", 0, "rotate", "angle"), "min must be"),
    ("shift min > max", {"ops": [{"op": "shift", "y": [0.2, 0.1]}]}, ("ops", 0, "shift", "y"), "min must be"),
    ("scale min > max", {"ops": [{"op": "crop", "size": 4, "scale": [1, 0.5]}]}, ("ops", 0, "crop", "scale"), "min"),
    ("size zero", {"ops": [{"op": "crop", "size": [0, 10]}]}, ("ops", 0, "crop", "size", 0), "greater than 0"),
    ("size negative", {"ops": [{"op": "crop", "size": -3}]}, ("ops", 0, "crop", "size", 0), "greater than 0"),
    ("size huge", {"ops": [{"op": "crop", "size": [16385, 1]}]}, ("ops", 0, "crop", "size", 0), "less than or equal"),
    ("crop without size", {"ops": [{"op": "crop"}]}, ("ops", 0, "crop", "size"), "Field required"),
    ("output size zero", {"output": {"size": [10, 0]}}, ("output", "size", 1), "greater than 0"),
    ("unknown op", {"ops": [{"op": "blur"}]}, ("ops", 0), "does not match any of the expected tags"),
    ("op without name", {"ops": [{"p": 1}]}, ("ops", 0), "Unable to extract tag"),
    ("unknown op field", {"ops": [{"op": "reflect", "diagonal": True}]}, ("ops", 0, "reflect", "diagonal"), "Extra"),
    ("unknown top field", {"colour": 1}, ("colour",), "Extra inputs are not permitted"),
    ("unknown output field", {"output": {"dpi": 72}}, ("output", "dpi"), "Extra inputs are not permitted"),
    ("version 2", {"version": 2}, ("version",), "Input should be 1"),
    ("p above 1", {"ops": [{"op": "reflect", "p": 1.5}]}, ("ops", 0, "reflect", "p"), "less than or equal to 1"),
    ("p below 0", {"ops": [{"op": "shift", "p": -0.1}]}, ("ops", 0, "shift", "p"), "greater than or equal to 0"),
    (
        "right angles with angle",
        {"ops": [{"op": "rotate", "right_angles": [90], "angle": [1, 2]}]},
        ("ops", 0, "rotate"),
        "either angle",
    ),
    (
        "right angle 45",
        {"ops": [{"op": "rotate", "right_angles": [45]}]},
        ("ops", 0, "rotate", "right_angles", 0),
        "90",
    ),
    ("no right angles", {"ops": [{"op": "rotate", "right_angles": []}]}, ("ops", 0, "rotate", "right_angles"), "least"),
    (
        "angle past a turn",
        {"ops": [{"op": "rotate", "angle": [-400, 0]}]},
        ("ops", 0, "rotate", "angle"),
        "[-360, 360]",
    ),
    (
        "reflect without axis",
        {"ops": [{"op": "reflect", "horizontal": False, "vertical": False}]},
        ("ops", 0, "reflect"),
        "enable horizontal, vertical or both",
    ),
    ("scale zero", {"ops": [{"op": "crop", "size": 4, "scale": [0, 1]}]}, ("ops", 0, "crop", "scale"), "(0, 1]"),
    ("scale above 1", {"ops": [{"op": "crop", "size": 4, "scale": [0.5, 1.5]}]}, ("ops", 0, "crop", "scale"), "(0, 1]"),
    ("ratio zero", {"ops": [{"op": "crop", "size": 4, "ratio": [0, 1]}]}, ("ops", 0, "crop", "ratio"), "> 0"),
    ("fraction past 1", {"ops": [{"op": "shift", "x": [-2, 1]}]}, ("ops", 0, "shift"), "x: shifts in unit 'fraction'"),
    (
        "pixels past int32",
        {"ops": [{"op": "shift", "unit": "pixels", "y": [0, MAX_SHIFT_PX + 1]}]},
        ("ops", 0, "shift"),
        "y: shifts in unit 'pixels'",
    ),
    ("NaN bound", {"ops": [{"op": "shift", "x": [float("nan"), 0]}]}, ("ops", 0, "shift", "x", 0), "finite"),
    (
        "infinite bound",
        {"ops": [{"op": "rotate", "angle": [0, float("inf")]}]},
        ("ops", 0, "rotate", "angle", 1),
        "fin",
    ),
    ("NaN p", {"ops": [{"op": "reflect", "p": float("nan")}]}, ("ops", 0, "reflect", "p"), "finite"),
    ("unknown format", {"output": {"format": "gif"}}, ("output", "format"), "'png', 'jpeg', 'webp' or 'npy'"),
    ("quality 0", {"output": {"quality": 0}}, ("output", "quality"), "greater than or equal to 1"),
    ("quality 101", {"output": {"quality": 101}}, ("output", "quality"), "less than or equal to 100"),
    ("fill 256", {"ops": [{"op": "rotate", "fill": 256}]}, ("ops", 0, "rotate", "fill"), "255"),
    ("fill of 2 values", {"ops": [{"op": "rotate", "fill": [1, 2]}]}, ("ops", 0, "rotate", "fill"), "Field required"),
    ("unknown border", {"ops": [{"op": "shift", "border": "wrap"}]}, ("ops", 0, "shift", "border"), "'replicate'"),
    ("unknown interpolation", {"output": {"interpolation": "bicubic"}}, ("output", "interpolation"), "'lanczos'"),
    ("unknown crop mode", {"ops": [{"op": "crop", "size": 4, "mode": "corner"}]}, ("ops", 0, "crop", "mode"), "center"),
    (
        "unknown if_smaller",
        {"ops": [{"op": "crop", "size": 4, "if_smaller": "x"}]},
        ("ops", 0, "crop", "if_smaller"),
        "'pad' or 'error'",
    ),
    ("33 ops", {"ops": [{"op": "reflect"}] * 33}, ("ops",), "at most 32"),
    ("ops not a list", {"ops": {"op": "reflect"}}, ("ops",), "valid list"),
    ("spec not an object", [1], (), "valid dictionary"),  # type: ignore[list-item]
]


@pytest.mark.parametrize(("spec", "loc", "fragment"), [row[1:] for row in INVALID], ids=[row[0] for row in INVALID])
def test_every_validation_rule_names_its_field(spec: dict[str, Any], loc: tuple[Any, ...], fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Spec.model_validate(spec)
    first = caught.value.errors()[0]
    assert first["loc"][: len(loc)] == loc, caught.value  # a union (fill) appends its member's tag
    assert len(first["loc"]) == len(loc) or "fill" in loc
    assert any(fragment in error["msg"] for error in caught.value.errors()), caught.value


VALID_EDGES: list[dict[str, Any]] = [
    {"ops": [{"op": "reflect", "p": 0}, {"op": "reflect", "p": 1, "vertical": True, "horizontal": False}]},
    {"ops": [{"op": "rotate", "angle": [-360, 360]}, {"op": "rotate", "angle": [7, 7]}]},
    {"ops": [{"op": "rotate", "right_angles": [90, 180, 270], "fill": [1, 2, 3], "interpolation": "cubic"}]},
    {"ops": [{"op": "crop", "size": [16384, 1], "scale": [1, 1], "ratio": [0.001, 1000]}]},
    {"ops": [{"op": "shift", "x": [-1, 1], "y": [0, 0]}, {"op": "shift", "unit": "pixels", "x": [-500, 500]}]},
    {"ops": [{"op": "shift", "unit": "pixels", "x": [-MAX_SHIFT_PX, MAX_SHIFT_PX]}]},
    {"ops": [{"op": "reflect"}] * 32, "output": {"size": [1, 1], "format": "webp", "quality": 1}},
]


@pytest.mark.parametrize("spec", VALID_EDGES)
def test_bounds_themselves_are_accepted(spec: dict[str, Any]) -> None:
    assert Spec.model_validate(spec).model_dump(mode="json")["version"] == 1


def test_normalised_form_fills_every_default() -> None:
    normalised = Spec.model_validate({"ops": [{"op": "reflect"}]}).model_dump(mode="json")
    assert normalised == {
        "version": 1,
        "ops": [{"op": "reflect", "p": 0.5, "horizontal": True, "vertical": False}],
        "output": {"size": None, "interpolation": "linear", "format": "png", "quality": 90},
        "targets": {
            "box_format": "pascal_voc",
            "min_visibility": 0.0,
            "min_area": 0.0,
            "clip": True,
            "drop_outside_keypoints": True,
            "mask_fill": 0,
        },
    }


def test_shapes_for_tracks_every_op() -> None:
    quarter = Spec(ops=[Rotate(right_angles=[90], p=1.0)])
    assert quarter.shapes_for(10, 20) == {(20, 10)}
    maybe = Spec(ops=[Rotate(right_angles=[90, 180], p=0.5)])
    assert maybe.shapes_for(10, 20) == {(20, 10), (10, 20)}
    cropped = Spec(ops=[Rotate(right_angles=[270], p=1.0), Crop(size=(5, 6))])
    assert cropped.shapes_for(10, 20) == {(5, 6)}
    resized = Spec(ops=[Crop(size=(5, 6), p=0.3)], output=Output(size=(7, 7)))
    assert resized.shapes_for(10, 20) == {(7, 7)}
    assert Spec(ops=[Rotate(), Shift(), Reflect()]).shapes_for(10, 20) == {(10, 20)}


def test_op_shapes_keeps_the_input_when_p_is_below_1() -> None:
    assert op_shapes(Crop(size=(3, 4), p=1.0), (10, 20)) == {(3, 4)}
    assert op_shapes(Crop(size=(3, 4), p=0.9), (10, 20)) == {(3, 4), (10, 20)}


ROUND_TRIPS: list[dict[str, Any]] = [
    *VALID_EDGES,
    {"ops": [{"op": "rotate", "right_angles": [90]}]},
    {"ops": [{"op": "rotate"}, {"op": "rotate", "angle": None}, {"op": "crop", "size": 5}], "output": {"size": 3}},
]


@pytest.mark.parametrize("spec", ROUND_TRIPS)
def test_the_normalised_form_validates_again_to_the_same_spec(spec: dict[str, Any]) -> None:
    """What the client sends and what /v1/specs/validate returns is the normalised form: it must be accepted."""
    checked = Spec.model_validate(spec)
    assert Spec.model_validate(checked.model_dump(mode="json")) == checked
    assert Spec.model_validate_json(checked.model_dump_json()) == checked


def test_a_rotation_has_either_a_range_or_right_angles() -> None:
    assert Rotate().angle == (-15.0, 15.0) and Rotate().right_angles is None
    assert Rotate(right_angles=[180]).angle is None
    with pytest.raises(ValidationError, match="not both"):
        Rotate(right_angles=[90], angle=(-15, 15))
