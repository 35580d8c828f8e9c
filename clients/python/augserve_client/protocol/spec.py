"""The augmentation spec: the contract between every client and the server.

A spec is an ordered list of ops (reflect, rotate, crop, shift), each applied with probability ``p``, an
output section (final size, encoding), and the rules masks, boxes and keypoints follow (:mod:`.targets`).
It is validated here, in the light client package, so a caller learns about a bad spec before sending it, and
the server imports the very same models so both sides agree.

Sizes are always ``[height, width]``, like numpy shapes. Ranges are ``[min, max]`` with ``min <= max``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.functional_validators import AfterValidator, BeforeValidator

from .allowlist import CLASS_KEY, TO_DICT_KEYS, Transform
from .numbers import Boolean, Integer, Number, a_number, bounded
from .targets import TargetRules

SPEC_VERSION = 1

Border = Literal["constant", "reflect", "replicate"]
Interpolation = Literal["nearest", "linear", "cubic", "area", "lanczos"]
Format = Literal["png", "jpeg", "webp", "npy"]
Shape = tuple[int, int]
DEFAULT_ANGLE = (-15.0, 15.0)
MIN_RATIO, MAX_RATIO = 1e-4, 1e4  # random_resized crop aspect ratios (width / height)
MAX_SHIFT_PX = 2**31 - 1  # OpenCV's coordinates are 32-bit; anything larger moves the content out of any image


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"min must be <= max, got [{value[0]}, {value[1]}]")
    return value


def _square_or_pair(value: object) -> object:
    return (value, value) if isinstance(value, int) else value


Range = Annotated[tuple[Number, Number], AfterValidator(_ordered)]
Size = Annotated[
    tuple[bounded(int, gt=0, le=16384), bounded(int, gt=0, le=16384)],
    Field(description="[height, width] in pixels; a single integer means a square"),
]
Fill = (
    bounded(int, ge=0, le=255)
    | tuple[
        bounded(int, ge=0, le=255),
        bounded(int, ge=0, le=255),
        bounded(int, ge=0, le=255),
    ]
)


class _Model(BaseModel):
    # allow_inf_nan=False: Python's json accepts NaN and Infinity, and a NaN range bound slips past every
    # ``min <= max`` comparison, so it would only fail mid-stream, after the 200 was sent.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _tag_required(schema: dict[str, Any]) -> None:
    """``op`` has a default, so Python can write ``Reflect()``; but on the wire it picks the op, so the JSON
    schema says it is required."""
    schema["required"] = sorted({*schema.get("required", []), "op"})


class _Op(_Model):
    model_config = ConfigDict(json_schema_extra=_tag_required)

    p: Number = Field(1.0, ge=0.0, le=1.0, description="probability that this op is applied to a variant")


class _Bordered(_Op):
    border: Border = Field("constant", description="how pixels that come from outside the image are filled")
    fill: Fill = Field(0, description="fill value for border=constant: one grey level or [r, g, b]")


class Reflect(_Op):
    """Mirror the image; each enabled axis is flipped independently with probability ``p``."""

    op: Literal["reflect"] = "reflect"
    p: Number = Field(0.5, ge=0.0, le=1.0)
    horizontal: Boolean = Field(True, description="left-right mirror (reverses columns)")
    vertical: Boolean = Field(False, description="top-bottom mirror (reverses rows)")

    @model_validator(mode="after")
    def _some_axis(self) -> Reflect:
        if not (self.horizontal or self.vertical):
            raise ValueError("enable horizontal, vertical or both")
        return self


class Rotate(_Bordered):
    """Rotate about the centre by an angle drawn from ``angle``, or by one of ``right_angles``.

    A range rotation keeps the image shape (corners are filled per ``border``); a right-angle rotation is
    lossless and swaps height and width for 90 and 270. Exactly one of the two is set: ``angle`` defaults to
    [-15, 15] unless ``right_angles`` is given, and stays null then, so the normalised form validates again.
    """

    op: Literal["rotate"] = "rotate"
    p: Number = Field(0.5, ge=0.0, le=1.0)
    angle: Range | None = Field(
        None, description="[min, max] degrees, counter-clockwise positive; [-15, 15] unless right_angles is given"
    )
    right_angles: list[Literal[90, 180, 270]] | None = Field(
        None, min_length=1, description="rotate by one of these instead of a range (lossless)"
    )
    interpolation: Interpolation = "linear"

    @model_validator(mode="before")
    @classmethod
    def _default_angle(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("right_angles") is None and data.get("angle") is None:
            data = {**data, "angle": DEFAULT_ANGLE}
        return data

    @field_validator("angle")
    @classmethod
    def _within_turn(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not -360.0 <= value[0] <= value[1] <= 360.0:
            raise ValueError("angle must lie within [-360, 360]")
        return value

    @model_validator(mode="after")
    def _one_mode(self) -> Rotate:
        if self.right_angles is not None and self.angle is not None:
            raise ValueError("give either angle (a range) or right_angles, not both")
        return self


class Crop(_Bordered):
    """Cut a window out of the image.

    ``random``: a window of ``size`` at a random position; ``center``: the centred window; ``random_resized``:
    a window covering a random ``scale`` of the area with a random aspect ``ratio``, resized to ``size``.
    When the image is smaller than ``size`` (random and center), ``if_smaller`` says what happens: ``pad``
    pads it symmetrically per ``border``/``fill`` before cropping; ``error`` refuses the request with 422.
    """

    op: Literal["crop"] = "crop"
    mode: Literal["random", "center", "random_resized"] = "random"
    size: Annotated[Size, Field(description="[height, width] of the crop")]
    scale: Range = Field((0.08, 1.0), description="random_resized: [min, max] fraction of the area")
    ratio: Range = Field(
        (3 / 4, 4 / 3), description="random_resized: [min, max] aspect ratio width/height, within [1e-4, 1e4]"
    )
    if_smaller: Literal["pad", "error"] = "pad"
    interpolation: Interpolation = "linear"

    @model_validator(mode="before")
    @classmethod
    def _square(cls, data: object) -> object:
        if isinstance(data, dict) and "size" in data:
            data = {**data, "size": _square_or_pair(data["size"])}
        return data

    @field_validator("scale")
    @classmethod
    def _fraction_of_area(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 < value[0] <= value[1] <= 1.0:
            raise ValueError("scale must lie within (0, 1]")
        return value

    @field_validator("ratio")
    @classmethod
    def _positive_ratio(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not value[0] > 0.0:
            raise ValueError("ratio must be > 0")
        if not MIN_RATIO <= value[0] <= value[1] <= MAX_RATIO:
            # The crop draws a window of sqrt(area * ratio) by sqrt(area / ratio) pixels: beyond these bounds
            # a side overflows to infinity (or rounds to nothing) instead of drawing a window.
            raise ValueError(f"ratio must lie within [{MIN_RATIO:g}, {MAX_RATIO:g}]")
        return value


class Shift(_Bordered):
    """Translate the content; ``x`` and ``y`` are ranges in fractions of width/height, or pixels."""

    op: Literal["shift"] = "shift"
    p: Number = Field(0.5, ge=0.0, le=1.0)
    x: Range = Field((-0.1, 0.1), description="[min, max] horizontal shift; positive moves content right")
    y: Range = Field((-0.1, 0.1), description="[min, max] vertical shift; positive moves content down")
    unit: Literal["fraction", "pixels"] = "fraction"
    interpolation: Interpolation = "linear"

    @model_validator(mode="after")
    def _within_image(self) -> Shift:
        bound = 1 if self.unit == "fraction" else MAX_SHIFT_PX
        for axis, (low, high) in (("x", self.x), ("y", self.y)):
            if low < -bound or high > bound:
                raise ValueError(f"{axis}: shifts in unit {self.unit!r} must lie within [-{bound}, {bound}]")
        return self


class Albumentations(_Op):
    """One transform of albumentations' own, in its serialized form, from the allow-list
    (:mod:`.allowlist`: colour, blur, noise and the like, which keep the image's shape).

    ``transform`` is what ``A.to_dict(t)`` writes for the transform ``t`` (the whole dict, or its
    ``"transform"`` part). Its ``p`` becomes this op's ``p``; its randomness is seeded per variant like every op.
    """

    op: Literal["albumentations"] = "albumentations"
    transform: Transform = Field(
        description="A.to_dict(t)['transform'] of an allow-listed transform, e.g. "
        "{'__class_fullname__': 'GaussianBlur', 'blur_limit': [3, 7], 'p': 0.5}"
    )

    @model_validator(mode="before")
    @classmethod
    def _serialized(cls, data: object) -> object:
        """Accept ``A.to_dict(t)`` as it is, and take the transform's own ``p`` as the op's."""
        if not isinstance(data, dict) or not isinstance(data.get("transform"), dict):
            return data
        transform = data["transform"]
        if isinstance(transform.get("transform"), dict) and set(transform) <= TO_DICT_KEYS:
            transform = transform["transform"]  # the whole A.to_dict output, {"__version__": ..., "transform": ...}
        transform = dict(transform)
        inner = transform.pop("p", None)
        if inner is not None and "p" in data and data["p"] != inner:
            raise ValueError(f"p is given twice, as {data['p']} and inside the transform as {inner}")
        return {**data, "transform": transform, **({"p": inner} if inner is not None else {})}

    @property
    def name(self) -> str:
        return str(self.transform[CLASS_KEY])

    @property
    def arguments(self) -> dict[str, Any]:
        """The transform's parameters, without its class name (and without ``p``, which is the op's)."""
        return {key: value for key, value in self.transform.items() if key != CLASS_KEY}


Op = Annotated[Reflect | Rotate | Crop | Shift | Albumentations, Field(discriminator="op")]
OPS: dict[str, type[_Op]] = {
    "reflect": Reflect,
    "rotate": Rotate,
    "crop": Crop,
    "shift": Shift,
    "albumentations": Albumentations,
}


class Output(_Model):
    """What every variant looks like on the way out."""

    size: Size | None = Field(None, description="final [height, width]; makes every variant one shape")
    interpolation: Interpolation = "linear"
    format: Format = Field("png", description="png | jpeg | webp | npy (raw uint8 HxWx3)")
    quality: Integer = Field(90, ge=1, le=100, description="jpeg and webp quality")

    @model_validator(mode="before")
    @classmethod
    def _square(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("size") is not None:
            data = {**data, "size": _square_or_pair(data["size"])}
        return data


class Spec(_Model):
    """An ordered list of ops and the output they produce."""

    version: Annotated[Literal[1], BeforeValidator(a_number)] = SPEC_VERSION  # true == 1 in Python, not JSON
    ops: list[Op] = Field(default_factory=list, max_length=32)
    output: Output = Field(default_factory=Output)
    targets: TargetRules = Field(
        default_factory=TargetRules, description="how masks, boxes and keypoints sent with the images follow them"
    )

    def shapes_for(self, height: int, width: int) -> set[Shape]:
        """Every (height, width) a variant of an image of this size can have.

        The server uses it to refuse, before any work, a batch that cannot have one shape.
        """
        if self.output.size is not None:
            return {tuple(self.output.size)}
        return reaching_shapes(self.ops, (height, width))[-1]


def reaching_shapes(ops: list[Op], shape: Shape) -> list[set[Shape]]:
    """``[i]``: every shape an image of ``shape`` can have when it reaches ``ops[i]``; ``[-1]``: after the last.

    The one place shapes are propagated through a spec: batch shapes and crop-fit checks both read it."""
    reaching: list[set[Shape]] = [{shape}]
    for op in ops:
        reaching.append({after for before in reaching[-1] for after in op_shapes(op, before)})
    return reaching


def op_shapes(op: _Op, shape: Shape) -> set[Shape]:
    """Shapes one op can produce from ``shape`` (the input survives when ``p`` < 1)."""
    produced: set[Shape]
    if isinstance(op, Crop):
        produced = {tuple(op.size)}
    elif isinstance(op, Rotate) and op.right_angles is not None:
        produced = {shape[::-1] if angle in (90, 270) else shape for angle in op.right_angles}
    else:
        produced = {shape}
    return produced | {shape} if op.p < 1.0 else produced


# The spec the API's own docs show (and the README's curl line sends): one of each op.
EXAMPLE_SPEC: dict[str, Any] = {
    "version": 1,
    "ops": [
        {"op": "reflect", "horizontal": True, "p": 0.5},
        {"op": "rotate", "angle": [-15, 15], "p": 0.5},
        {"op": "crop", "mode": "random_resized", "size": [224, 224], "scale": [0.5, 1.0]},
        {"op": "shift", "x": [-0.1, 0.1], "y": [-0.1, 0.1], "p": 0.5},
    ],
    "output": {"format": "png"},
}
