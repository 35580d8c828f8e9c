"""The albumentations transforms a spec may carry in its own serialized form, each parameter with its type and
bounds.

Colour, blur and noise are what trainers add to geometry, and albumentations already has them, each with a
serialized form (``A.to_dict(transform)["transform"]``: ``{"__class_fullname__": "GaussianBlur", "p": 0.5,
"blur_limit": [3, 7], ...}``). An ``albumentations`` op carries one such dict, and only for a class named here:

- pixel-level transforms only, which keep the image's shape and leave boxes and keypoints where they are, so
  every target rule, shape check and the fused geometry keep holding;
- nothing that carries code (``Lambda`` and friends) or another transform, whatever its parameters;
- every parameter as ``A.to_dict`` writes it (a range as ``[low, high]``), of the type and within the bounds
  albumentations takes and renders on any image augserve decodes; where a number is a cost (a blur kernel, a
  hole count) that the client chooses and the server spends, within a cap of ours.

This module is the one place the list is kept: :data:`TRANSFORMS` is written once, and both the check
(:func:`check_transform`) and the JSON schema that ``/openapi.json`` publishes for the op's ``transform`` are
made from it, so they cannot disagree. Types and bounds are errors of their own types; the one rule JSON Schema
cannot state, ``low <= high`` in a range, is a ``value_error``. It needs no albumentations (the client package
does not depend on it); the server then builds the transform with albumentations' own schema as well.
"""

from __future__ import annotations

import functools
import math
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import ConfigDict, Field, TypeAdapter, ValidatorFunctionWrapHandler, with_config
from pydantic.functional_validators import AfterValidator, BeforeValidator, WrapValidator
from pydantic.json_schema import WithJsonSchema
from pydantic_core import PydanticCustomError
from typing_extensions import NotRequired, Required, TypedDict

from .numbers import Boolean, a_number

CLASS_KEY = "__class_fullname__"
CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)


def _bounds_text(low: float, high: float, above: bool) -> str:
    return f"{'(' if above else '['}{low:g}, {high:g}]"


def number(low: float, high: float, *, integer: bool = False, above: bool = False) -> Any:
    """A number within ``[low, high]`` (``(low, high]`` when ``above``), refused by a message naming both ends."""

    def within(value: float) -> float:
        if not ((low < value) if above else (low <= value)) or not value <= high:
            text = _bounds_text(low, high, above)
            raise PydanticCustomError(
                "out_of_bounds", "must lie within {bounds}, got {value}", {"bounds": text, "value": value}
            )
        return value

    schema = {
        "type": "integer" if integer else "number",
        "exclusiveMinimum" if above else "minimum": low,
        "maximum": high,
    }
    kind = int if integer else float
    return Annotated[kind, BeforeValidator(a_number), AfterValidator(within), WithJsonSchema(schema)]


def kernel(low: int, high: int, *, zero: bool = False) -> Any:
    """An odd kernel size within ``[low, high]`` (or 0, "from sigma", when ``zero``): a list JSON Schema states."""
    sizes = ([0] if zero else []) + list(range(low | 1, high + 1, 2))

    def odd(value: int) -> int:
        if value not in sizes:
            text = f"an odd kernel size within [{low}, {high}]" + (" or 0" if zero else "")
            raise PydanticCustomError("kernel_size", "must be {text}, got {value}", {"text": text, "value": value})
        return value

    schema = {"type": "integer", "enum": sizes}
    return Annotated[int, BeforeValidator(a_number), AfterValidator(odd), WithJsonSchema(schema)]


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if not value[0] <= value[1]:
        raise ValueError(f"a range is [low, high] with low <= high, got [{value[0]:g}, {value[1]:g}]")
    return value


def _schema(kind: Any) -> dict[str, Any]:
    """The JSON schema one of the types above states (in its ``WithJsonSchema``), without building a validator."""
    stated = [meta.json_schema for meta in get_args(kind)[1:] if isinstance(meta, WithJsonSchema)]
    return stated[-1] if stated and stated[-1] is not None else {}


def _array(item: Any, count: int) -> WithJsonSchema:
    """``count`` items of one schema, as ``items`` rather than pydantic's ``prefixItems`` (one per position):
    the same arrays, and a schema whose readers enumerate the item once."""
    return WithJsonSchema({"type": "array", "items": _schema(item), "minItems": count, "maxItems": count})


def pair(item: Any) -> Any:
    """Two values of ``item``, in any order (a grid's rows and columns; a range albumentations draws from
    whichever way round it is given)."""
    return Annotated[tuple[item, item], _array(item, 2)]


def span(item: Any) -> Any:
    """A range ``[low, high]`` of ``item`` with ``low <= high``, where albumentations requires it."""
    return Annotated[tuple[item, item], AfterValidator(_ordered), _array(item, 2)]


UNIT = number(0, 1)
GREY = number(0, 255)
RGB = Annotated[tuple[GREY, GREY, GREY], _array(GREY, 3)]
BLUR = span(kernel(3, 63))
INTERPOLATION = number(0, 6, integer=True)  # cv2's INTER_* flags 0..6, which albumentations' Downscale takes


@with_config(CONFIG)
class InterpolationPair(TypedDict):
    downscale: INTERPOLATION
    upscale: INTERPOLATION


# class name -> {parameter: its type}; a parameter may be left out (albumentations' default), "p" too.
TRANSFORMS: dict[str, dict[str, Any]] = {
    "Blur": {"blur_limit": BLUR},
    "CLAHE": {"clip_limit": pair(number(1, 100)), "tile_grid_size": pair(number(1, 64, integer=True))},
    "ChannelShuffle": {},
    "CoarseDropout": {
        "num_holes_range": span(number(1, 64, integer=True)),
        "hole_height_range": span(UNIT),  # fractions of the side (whole pixels, 0 or 1, fit any image too)
        "hole_width_range": span(UNIT),
        "fill": GREY | RGB | Literal["random", "random_uniform", "inpaint_telea", "inpaint_ns"],
        "fill_mask": GREY | None,
    },
    "ColorJitter": {
        "brightness": span(number(0, 10)),
        "contrast": span(number(0, 10)),
        "saturation": span(number(0, 10)),
        "hue": span(number(-0.5, 0.5)),
    },
    "Downscale": {"interpolation_pair": InterpolationPair, "scale_range": span(number(0.1, 1))},
    "Emboss": {"alpha": pair(UNIT), "strength": pair(number(0, 10))},
    "GaussNoise": {
        "std_range": span(UNIT),
        "mean_range": span(number(-1, 1)),
        "per_channel": Boolean,
        "noise_scale_factor": number(0, 1, above=True),
    },
    "GaussianBlur": {"blur_limit": span(kernel(3, 63, zero=True)), "sigma_limit": span(number(0.01, 8))},
    "HueSaturationValue": {
        "hue_shift_limit": pair(number(-180, 180)),
        "sat_shift_limit": pair(number(-255, 255)),
        "val_shift_limit": pair(number(-255, 255)),
    },
    "ISONoise": {"color_shift": span(UNIT), "intensity": span(number(0, 10))},
    "ImageCompression": {
        "compression_type": Literal["jpeg", "webp"],
        "quality_range": span(number(1, 100, integer=True)),
    },
    "InvertImg": {},
    "MedianBlur": {"blur_limit": BLUR},
    "MotionBlur": {
        "blur_limit": BLUR,
        "allow_shifted": Boolean,
        "angle_range": span(number(0, 360)),
        "direction_range": span(number(-1, 1)),
    },
    "Posterize": {"num_bits": span(number(1, 7, integer=True))},
    "RandomBrightnessContrast": {
        "brightness_limit": pair(number(-10, 10)),
        "contrast_limit": pair(number(-10, 10)),
        "brightness_by_max": Boolean,
        "ensure_safe_range": Boolean,
    },
    "RandomGamma": {"gamma_limit": pair(number(1, 1000))},
    "RandomToneCurve": {"scale": UNIT, "per_channel": Boolean},
    "Sharpen": {
        "alpha": pair(UNIT),
        "lightness": pair(number(0, 10)),
        "method": Literal["kernel", "gaussian"],
        "kernel_size": kernel(3, 63),
        "sigma": number(0, 8, above=True),
    },
    "Solarize": {"threshold_range": span(UNIT)},
    "ToGray": {
        "num_output_channels": number(3, 3, integer=True),  # the engine's images are RGB, always
        "method": Literal["weighted_average", "from_lab", "desaturation", "average", "max", "pca"],
    },
}


def _parameters(name: str, parameters: dict[str, Any]) -> Any:
    """One transform's serialized form as a TypedDict: its class name, and any of its parameters and ``p``."""
    fields = {
        CLASS_KEY: Required[Literal[name]],  # type: ignore[valid-type]
        "p": NotRequired[UNIT | None],
        **{key: NotRequired[kind] for key, kind in parameters.items()},
    }
    shape = TypedDict(name, fields)  # type: ignore[operator]
    return with_config(CONFIG)(shape)


SHAPES = {name: _parameters(name, parameters) for name, parameters in TRANSFORMS.items()}
ONE_OF = Annotated[Union[tuple(SHAPES.values())], Field(discriminator=CLASS_KEY)]  # noqa: UP007


TO_DICT_KEYS = {"__version__", "transform"}


@with_config(ConfigDict(extra="forbid"))
class ToDict(TypedDict):
    """The whole of what ``A.to_dict`` writes: ``{"__version__": ..., "transform": {...}}``."""

    __version__: NotRequired[Any]
    transform: Required[ONE_OF]


def _bound(kind: Any) -> tuple[float, float] | None:
    """The ``[low, high]`` a parameter's numbers lie within, read from its JSON schema (for ``GET /v1/ops``)."""
    schema = _schema(kind)
    item = schema.get("items", schema)
    if item.get("type") not in ("number", "integer"):
        return None
    if "enum" in item:
        return min(item["enum"]), max(item["enum"])
    return item.get("minimum", item.get("exclusiveMinimum")), item["maximum"]


# class name -> {parameter: (low, high)} for every numeric parameter: what the server's /v1/ops lists.
ALLOWED: dict[str, dict[str, tuple[float, float]]] = {
    name: {key: bound for key, kind in parameters.items() if (bound := _bound(kind)) is not None}
    for name, parameters in TRANSFORMS.items()
}


def check_transform(transform: dict[str, Any]) -> dict[str, Any]:
    """``transform``, its values as their types say (a range a tuple, a number of a float parameter a float, as
    albumentations would take them), if its class is allowed and its parameters have their types and bounds; else
    a ValidationError naming the parameter (its location inside ``transform``)."""
    name = transform.get(CLASS_KEY)
    if not isinstance(name, str):
        message = "give the transform's class as '{key}', as A.to_dict writes it"
        raise PydanticCustomError("transform_class", message, {"key": CLASS_KEY})
    if name not in TRANSFORMS:
        message = "{name} is not on the allow-list of albumentations transforms (GET /v1/ops lists it): {allowed}"
        raise PydanticCustomError("transform_class", message, {"name": name[:64], "allowed": ", ".join(TRANSFORMS)})
    for key, value in transform.items():
        if isinstance(value, dict) and CLASS_KEY in value:
            message = (
                "{where} holds a transform: a parameter is a number, a word or a short list (no transforms, no code)"
            )
            raise PydanticCustomError("nested_transform", message, {"where": f"{name}.{key}"})
    return dict(_check(name).validate_python(transform))


@functools.cache
def _check(name: str) -> TypeAdapter[Any]:
    """The validator of one class's shape, built when a spec first names the class (importing the contract
    builds none: 22 of them cost ~100 ms)."""
    return TypeAdapter(SHAPES[name])


def _allowed(value: Any, handler: ValidatorFunctionWrapHandler) -> dict[str, Any]:
    return check_transform(handler(value))


# The type of the op's ``transform``: a dict, checked above; its JSON schema is the allowed shapes, one per
# class (``oneOf``, told apart by the class name), or the whole ``A.to_dict`` output around one of them.
Transform = Annotated[dict[str, Any], WrapValidator(_allowed, json_schema_input_type=Union[ONE_OF, ToDict])]  # noqa: UP007


def size_problem(transform: dict[str, Any], height: int, width: int) -> str | None:
    """What keeps ``transform`` from rendering an image of ``height`` x ``width``, or None. albumentations fails
    on such images in the middle of a stream (measured: HueSaturationValue on one pixel; Downscale when a side
    scaled by its lowest scale rounds to nothing), so the service refuses them first, naming the file."""
    if height * width < 2:
        return f"needs an image of at least 2 pixels, got {width}x{height}"
    if transform.get(CLASS_KEY) == "Downscale":
        low = float(transform.get("scale_range", (0.25, 0.25))[0])
        side = math.floor(0.5 / low) + 1  # the least side that keeps a pixel at that scale
        if min(height, width) < side:
            return f"at scale {low:g} needs images of at least {side}x{side}, got {width}x{height}"
    return None
