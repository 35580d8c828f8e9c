"""An albumentations pipeline, as ``A.to_dict`` writes it, turned into the equivalent augserve spec.

A trainer who has a ``Compose`` pastes ``A.to_dict(compose)`` (or its JSON, ``A.save(compose, path)``) and gets a
:class:`~augserve_client.protocol.spec.Spec` back, without albumentations installed here:

- the geometry augserve has ops for becomes those ops: ``HorizontalFlip``/``VerticalFlip`` -> ``reflect``,
  ``Rotate`` -> ``rotate``, ``RandomResizedCrop``/``RandomCrop``/``CenterCrop`` -> ``crop``, an ``Affine`` that
  only translates -> ``shift``, and a final ``Resize`` -> ``output.size``;
- an allow-listed transform (:mod:`augserve_client.protocol.allowlist`) becomes an ``albumentations`` op;
- ``bbox_params`` and ``keypoint_params`` become the spec's ``targets`` rules;
- anything else is a ValueError naming the class and what stands in the way.

Same seed, same draws: the ops draw what albumentations' transforms draw, so a pipeline without a fused run
(a random resized crop after flips and a rotation, which augserve renders in one resampling) gives the same
bytes as albumentations' own ``Compose`` seeded the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .protocol.allowlist import ALLOWED, CLASS_KEY
from .protocol.spec import Spec

INTERPOLATIONS = {0: "nearest", 1: "linear", 2: "cubic", 3: "area", 4: "lanczos"}  # OpenCV's codes
BORDERS = {0: "constant", 1: "replicate", 4: "reflect"}  # BORDER_CONSTANT, _REPLICATE, _REFLECT_101


def spec_from_albumentations(serialized: dict[str, Any] | str | Path) -> Spec:
    """The augserve spec for ``A.to_dict(compose)`` (a dict, its JSON text, or a file ``A.save`` wrote)."""
    data = _loaded(serialized)
    compose = data.get("transform", data)
    if compose.get(CLASS_KEY) != "Compose":
        raise ValueError(f"expected A.to_dict of a Compose, got {compose.get(CLASS_KEY)!r}")
    steps = list(compose.get("transforms", []))
    output: dict[str, Any] = {}
    if steps and steps[-1].get(CLASS_KEY) == "Resize":
        resize = steps.pop()
        output = {"size": [resize["height"], resize["width"]], "interpolation": _interpolation(resize)}
    spec: dict[str, Any] = {"ops": [_op(step) for step in steps], "targets": _targets(compose)}
    if output:
        spec["output"] = output
    return Spec.model_validate(spec)


def _loaded(serialized: dict[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(serialized, dict):
        return serialized
    text = Path(serialized).read_text() if isinstance(serialized, Path) else serialized
    return dict(json.loads(text))


def _op(step: dict[str, Any]) -> dict[str, Any]:
    name = step.get(CLASS_KEY)
    p = step.get("p", 1.0)
    if name in ("HorizontalFlip", "VerticalFlip"):
        return {"op": "reflect", "horizontal": name == "HorizontalFlip", "vertical": name == "VerticalFlip", "p": p}
    if name == "Rotate":
        _unsupported(step, crop_border=False, rotate_method="largest_box")
        return {"op": "rotate", "angle": step["limit"], **_resampled(step), "p": p}
    if name == "RandomResizedCrop":
        size, scale, ratio = step["size"], step["scale"], step["ratio"]
        mode = {"mode": "random_resized", "size": size, "scale": scale, "ratio": ratio}
        return {"op": "crop", **mode, "interpolation": _interpolation(step), "p": p}
    if name in ("RandomCrop", "CenterCrop"):
        mode = "random" if name == "RandomCrop" else "center"
        fit = {"if_smaller": "pad" if step.get("pad_if_needed") else "error"}
        border = {"border": _border(step), "fill": step.get("fill", 0)}
        return {"op": "crop", "mode": mode, "size": [step["height"], step["width"]], **fit, **border, "p": p}
    if name == "Affine":
        return _shift(step, p)
    if name in ALLOWED:
        return {"op": "albumentations", "transform": step}
    raise ValueError(
        f"{name} has no augserve op and is not on the allow-list of albumentations transforms "
        f"(augserve_client.protocol.allowlist.ALLOWED)"
    )


def _shift(step: dict[str, Any], p: float) -> dict[str, Any]:
    """An Affine that only translates: ``shift`` (scale, rotation and shear have no augserve op)."""
    _unsupported(step, rotate=[0, 0], shear={"x": [0, 0], "y": [0, 0]}, scale={"x": [1, 1], "y": [1, 1]})
    if step.get("translate_px") is not None:
        axes, unit = step["translate_px"], "pixels"
    else:
        axes, unit = step["translate_percent"], "fraction"
    return {"op": "shift", "x": axes["x"], "y": axes["y"], "unit": unit, **_resampled(step), "p": p}


def _unsupported(step: dict[str, Any], **expected: Any) -> None:
    """Refuse a step whose parameters ask for what the augserve op cannot do."""
    for key, value in expected.items():
        if key in step and _plain(step[key]) != _plain(value):
            raise ValueError(f"{step[CLASS_KEY]} with {key}={step[key]!r}: augserve's op supports only {value!r}")


def _plain(value: Any) -> Any:
    """Tuples as lists and whole floats as ints, so serialized and expected values compare."""
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _resampled(step: dict[str, Any]) -> dict[str, Any]:
    return {"interpolation": _interpolation(step), "border": _border(step), "fill": step.get("fill", 0)}


def _interpolation(step: dict[str, Any]) -> str:
    code = step.get("interpolation", 1)
    if code not in INTERPOLATIONS:
        raise ValueError(f"{step[CLASS_KEY]}: interpolation {code} has no augserve name ({INTERPOLATIONS})")
    return INTERPOLATIONS[code]


def _border(step: dict[str, Any]) -> str:
    code = step.get("border_mode", 0)
    if code not in BORDERS:
        raise ValueError(f"{step[CLASS_KEY]}: border_mode {code} has no augserve name ({BORDERS})")
    return BORDERS[code]


def _targets(compose: dict[str, Any]) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    boxes, points = compose.get("bbox_params"), compose.get("keypoint_params")
    if boxes:
        rules |= {"box_format": boxes["format"], "clip": bool(boxes.get("clip", False))}
        rules |= {key: boxes[key] for key in ("min_visibility", "min_area") if boxes.get(key) is not None}
    if points:
        if points.get("format", "xy") != "xy":
            raise ValueError(f"keypoint_params format {points['format']!r}: augserve's keypoints are 'xy'")
        rules["drop_outside_keypoints"] = bool(points.get("remove_invisible", True))
    return rules
