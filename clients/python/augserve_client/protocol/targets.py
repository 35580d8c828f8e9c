"""Targets that move with an image: a segmentation mask, bounding boxes with one label each, keypoints.

Two halves of the contract live here:

- :class:`TargetRules`, the spec's ``targets`` section: how boxes and keypoints follow the pixels. These are
  albumentations' own semantics (``BboxParams`` and ``KeypointParams``), named for people: the box format used
  both in requests and in each variant's metadata, ``min_visibility`` and ``min_area`` (boxes that keep less
  are dropped), ``clip`` (boxes reaching past the image are clipped to it instead of refused), whether keypoints
  that leave the image are dropped, and the value a mask is filled with where pixels come from outside the image.
- :class:`ImageTargets`, the boxes and keypoints of one image in a request (a mask travels as a file).

A variant's metadata carries what survived, in the request's format: ``boxes``, ``labels``, ``keypoints``,
``keypoint_labels``. The mask comes back as its own member (``{key}.mask.png``, or ``.mask.npy`` when the
output format is npy), and in epoch frames as one (N, H, W) array.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .numbers import Integer, Number, bounded

BoxFormat = Literal["pascal_voc", "coco", "yolo", "albumentations"]
BOX_FORMATS: dict[str, str] = {
    "pascal_voc": "[x_min, y_min, x_max, y_max] in pixels",
    "coco": "[x_min, y_min, width, height] in pixels",
    "yolo": "[x_center, y_center, width, height] as fractions of the image",
    "albumentations": "[x_min, y_min, x_max, y_max] as fractions of the image",
}
MAX_BOXES = 1000  # per image: a detection set's densest images hold a few hundred
MAX_KEYPOINTS = 1000
MAX_COORDINATE = 1e6  # far beyond any image the pixel limit allows; keeps every number finite through a warp

Coordinate = bounded(float, ge=-MAX_COORDINATE, le=MAX_COORDINATE)
Box = tuple[Coordinate, Coordinate, Coordinate, Coordinate]
Point = tuple[Coordinate, Coordinate]
Label = int | Annotated[str, Field(max_length=256)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TargetRules(_Model):
    """How boxes, keypoints and masks follow the image (albumentations' BboxParams and KeypointParams)."""

    box_format: BoxFormat = Field(
        "pascal_voc",
        description="format of boxes in requests and in each variant's metadata: "
        + "; ".join(f"{name}: {meaning}" for name, meaning in BOX_FORMATS.items()),
    )
    min_visibility: Number = Field(
        0.0, ge=0.0, le=1.0, description="drop a box keeping less than this fraction of its area after the ops"
    )
    min_area: Number = Field(0.0, ge=0.0, le=1e12, description="drop a box smaller than this, in output pixels")
    clip: bool = Field(
        True, strict=True, description="clip boxes that reach past the image to it (else such a box is refused)"
    )
    drop_outside_keypoints: bool = Field(True, strict=True, description="drop keypoints the ops move out of the image")
    mask_fill: Integer = Field(
        0,
        ge=0,
        le=255,
        description="mask value where pixels come from outside the image (255: a common 'ignore')",
    )


class ImageTargets(_Model):
    """The boxes (one label each) and keypoints (labels optional) of one image, in the spec's box format."""

    boxes: list[Box] = Field(default_factory=list, max_length=MAX_BOXES)
    labels: list[Label] = Field(default_factory=list, max_length=MAX_BOXES, description="one per box")
    keypoints: list[Point] = Field(default_factory=list, max_length=MAX_KEYPOINTS, description="[x, y] in pixels")
    keypoint_labels: list[Label] | None = Field(None, max_length=MAX_KEYPOINTS, description="one per keypoint")

    @model_validator(mode="after")
    def _one_label_each(self) -> ImageTargets:
        if len(self.labels) != len(self.boxes):
            raise ValueError(f"give one label per box: {len(self.boxes)} boxes, {len(self.labels)} labels")
        if self.keypoint_labels is not None and len(self.keypoint_labels) != len(self.keypoints):
            raise ValueError(
                f"give one label per keypoint: {len(self.keypoints)} keypoints, {len(self.keypoint_labels)} labels"
            )
        return self


def box_problem(box: Box, box_format: str, height: int, width: int, clip: bool) -> str | None:
    """What is wrong with ``box`` on an image of ``height`` x ``width``, or None.

    The same rules albumentations applies when a pipeline starts (a box must have a positive size, and lie
    inside the image unless ``clip``), checked before any work so the error names the box instead of breaking
    a stream."""
    x_min, y_min, x_max, y_max = _as_fractions(box, box_format, height, width)
    if not (x_max > x_min and y_max > y_min):
        return "has no area (x_max must exceed x_min and y_max exceed y_min)"
    if not clip and not (min(x_min, y_min) >= 0.0 and max(x_max, y_max) <= 1.0):
        return f"reaches past the {width}x{height} image (set spec.targets.clip to clip it instead)"
    if clip and (x_max <= 0.0 or y_max <= 0.0 or x_min >= 1.0 or y_min >= 1.0):
        return f"lies entirely outside the {width}x{height} image"
    return None


def point_problem(point: Point, height: int, width: int) -> str | None:
    """What is wrong with a keypoint on an image of ``height`` x ``width`` (it must lie on it), or None."""
    x, y = point
    if not (0.0 <= x < width and 0.0 <= y < height) or not (math.isfinite(x) and math.isfinite(y)):
        return f"lies outside the {width}x{height} image (x in [0, {width}), y in [0, {height}))"
    return None


def _as_fractions(box: Box, box_format: str, height: int, width: int) -> tuple[float, float, float, float]:
    """``box`` as [x_min, y_min, x_max, y_max] fractions of the image (albumentations' own format)."""
    a, b, c, d = box
    if box_format == "pascal_voc":
        return a / width, b / height, c / width, d / height
    if box_format == "coco":
        return a / width, b / height, (a + c) / width, (b + d) / height
    if box_format == "yolo":
        return a - c / 2, b - d / 2, a + c / 2, b + d / 2
    return a, b, c, d


def mask_member(stem: str, output_format: str) -> str:
    """A variant's mask in a tar stream: ``{stem}.mask.npy`` beside npy images (no decoder needed), else
    ``{stem}.mask.png`` (lossless, and what WebDataset readers decode as the field ``mask.png``)."""
    return f"{stem}.mask.{'npy' if output_format == 'npy' else 'png'}"


def is_mask_member(name: str) -> bool:
    return name.endswith((".mask.npy", ".mask.png"))
