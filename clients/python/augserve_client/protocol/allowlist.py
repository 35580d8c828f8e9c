"""The albumentations transforms a spec may carry in its own serialized form, and the bounds on their numbers.

Colour, blur and noise are what trainers add to geometry, and albumentations already has them, each with a
serialized form (``A.to_dict(transform)["transform"]``: ``{"__class_fullname__": "GaussianBlur", "p": 0.5,
"blur_limit": [3, 7], ...}``). An ``albumentations`` op carries one such dict, and only for a class named here:

- pixel-level transforms only, which keep the image's shape and leave boxes and keypoints where they are, so
  every target rule, shape check and the fused geometry keep holding;
- nothing that carries code (``Lambda`` and friends) or another transform, whatever its parameters;
- numbers finite, and bounded where a number is a cost: a blur kernel or a hole count the client chooses is
  CPU time the server spends, so those have caps of their own (the server's ``/v1/ops`` lists them).

This module is the one place the list is kept. It checks the shape of a transform dict without importing
albumentations (the client package does not depend on it); the server then validates the parameters with the
transform's own schema.
"""

from __future__ import annotations

import math
from typing import Any

# class name -> {parameter: (low, high)} for every number in that parameter; others get GENERIC_BOUND.
ALLOWED: dict[str, dict[str, tuple[float, float]]] = {
    "Blur": {"blur_limit": (0, 63)},
    "CLAHE": {"clip_limit": (0, 100), "tile_grid_size": (1, 64)},
    "ChannelShuffle": {},
    "CoarseDropout": {"num_holes_range": (1, 64)},
    "ColorJitter": {},
    "Downscale": {},
    "Emboss": {},
    "GaussNoise": {},
    "GaussianBlur": {"blur_limit": (0, 63), "sigma_limit": (0, 8)},
    "HueSaturationValue": {},
    "ISONoise": {},
    "ImageCompression": {},
    "InvertImg": {},
    "MedianBlur": {"blur_limit": (0, 63)},
    "MotionBlur": {"blur_limit": (0, 63)},
    "Posterize": {},
    "RandomBrightnessContrast": {},
    "RandomGamma": {},
    "RandomToneCurve": {},
    "Sharpen": {"kernel_size": (1, 63), "sigma": (0, 8)},
    "Solarize": {},
    "ToGray": {"num_output_channels": (3, 3)},  # the engine's images are RGB, always
}
GENERIC_BOUND = 1e4
CLASS_KEY = "__class_fullname__"
MAX_DEPTH = 3  # a parameter is a number, a string, a list of those, or a small dict of those (Downscale's)


def check_transform(transform: dict[str, Any]) -> dict[str, Any]:
    """``transform`` if its class is allowed and its values are plain and within bounds; else ValueError
    naming the class or the parameter."""
    name = transform.get(CLASS_KEY)
    if not isinstance(name, str):
        raise ValueError(f"give the transform's class as '{CLASS_KEY}', as A.to_dict writes it")
    if name not in ALLOWED:
        raise ValueError(
            f"{name} is not on the allow-list of albumentations transforms (GET /v1/ops lists it): "
            + ", ".join(sorted(ALLOWED))
        )
    bounds = ALLOWED[name]
    for parameter, value in transform.items():
        if parameter != CLASS_KEY:
            _check_value(name, parameter, value, bounds.get(parameter, (-GENERIC_BOUND, GENERIC_BOUND)), 0)
    return transform


def _check_value(name: str, parameter: str, value: Any, bound: tuple[float, float], depth: int) -> None:
    where = f"{name}.{parameter}"
    if depth > MAX_DEPTH:
        raise ValueError(f"{where} is nested too deeply to be a parameter")
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int | float):
        if not math.isfinite(value) or not bound[0] <= value <= bound[1]:
            raise ValueError(f"{where} must lie within [{bound[0]:g}, {bound[1]:g}], got {value}")
        return
    if isinstance(value, str):
        if len(value) > 64:
            raise ValueError(f"{where} is a string of {len(value)} characters; parameters are short words")
        return
    if isinstance(value, list | tuple) and len(value) <= 16:
        for item in value:
            _check_value(name, parameter, item, bound, depth + 1)
        return
    if isinstance(value, dict) and len(value) <= 16 and CLASS_KEY not in value:
        for item in value.values():
            _check_value(name, parameter, item, bound, depth + 1)
        return
    raise ValueError(f"{where} must be a number, a string, or a short list of them (no transforms, no code)")
