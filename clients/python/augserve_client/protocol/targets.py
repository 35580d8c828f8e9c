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
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
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
    x_min, y_min, x_max, y_max = as_fractions(np.array([box], dtype=np.float64), box_format, height, width)[0]
    return float(x_min), float(y_min), float(x_max), float(y_max)


def as_fractions(boxes: np.ndarray, box_format: str, height: int, width: int) -> np.ndarray:
    """(k, 4) boxes in ``box_format`` as [x_min, y_min, x_max, y_max] fractions of the image."""
    a, b, c, d = boxes.T
    if box_format == "pascal_voc":
        corners = (a / width, b / height, c / width, d / height)
    elif box_format == "coco":
        corners = (a / width, b / height, (a + c) / width, (b + d) / height)
    elif box_format == "yolo":
        corners = (a - c / 2, b - d / 2, a + c / 2, b + d / 2)
    else:
        corners = (a, b, c, d)
    return np.stack(corners, axis=-1).reshape(-1, 4)


def from_fractions(boxes: np.ndarray, box_format: str, height: int, width: int) -> np.ndarray:
    """(k, 4) [x_min, y_min, x_max, y_max] fractions of the image as boxes in ``box_format``."""
    x_min, y_min, x_max, y_max = boxes.T
    if box_format == "pascal_voc":
        values = (x_min * width, y_min * height, x_max * width, y_max * height)
    elif box_format == "coco":
        values = (x_min * width, y_min * height, (x_max - x_min) * width, (y_max - y_min) * height)
    elif box_format == "yolo":
        values = ((x_min + x_max) / 2, (y_min + y_max) / 2, x_max - x_min, y_max - y_min)
    else:
        values = (x_min, y_min, x_max, y_max)
    return np.stack(values, axis=-1).reshape(-1, 4)


def mask_member(stem: str, output_format: str) -> str:
    """A variant's mask in a tar stream: ``{stem}.mask.npy`` beside npy images (no decoder needed), else
    ``{stem}.mask.png`` (lossless, and what WebDataset readers decode as the field ``mask.png``)."""
    return f"{stem}.mask.{'npy' if output_format == 'npy' else 'png'}"


def is_mask_member(name: str) -> bool:
    return name.endswith((".mask.npy", ".mask.png"))


@dataclass(frozen=True)
class BatchTargets:
    """The targets of a batch's samples, as epoch frames carry them after the images (docs/wire-format.md).

    ``masks`` is one (N, H, W) uint8 array. Boxes and keypoints are ragged (sample ``i`` has its own count):
    each kind travels as ``offsets`` (N + 1 int64; sample ``i``'s rows are ``offsets[i]:offsets[i + 1]``) and
    the rows of all samples one after another, so a reader takes views, never copies. Box labels share the
    boxes' offsets, keypoint labels the keypoints'. Labels are integers here (a dataset's string labels are
    indices into its ``categories``). Absent kinds are None."""

    masks: np.ndarray | None = None
    boxes: list[np.ndarray] | None = None  # per sample, (k_i, 4) float32, in the spec's box format
    box_labels: list[np.ndarray] | None = None  # per sample, (k_i,) int64
    keypoints: list[np.ndarray] | None = None  # per sample, (m_i, 2) float32
    keypoint_labels: list[np.ndarray] | None = None  # per sample, (m_i,) int64

    def parts(self) -> list[tuple[str, np.ndarray]]:
        """The named arrays of a batch frame (:func:`augserve_client.protocol.wire.batch_frame`'s ``parts``)."""
        parts: list[tuple[str, np.ndarray]] = [] if self.masks is None else [("masks", self.masks)]
        for kind, labels_name, width in RAGGED:
            rows, labels = getattr(self, kind), getattr(self, labels_name)
            if rows is None:
                continue
            counts = [len(row) for row in rows]
            parts.append((f"{kind}_offsets", np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)))
            parts.append((kind, _rows(rows, width, np.float32)))
            if labels is not None:
                parts.append((labels_name, _rows(labels, None, np.int64)))
        return parts

    @classmethod
    def from_parts(cls, parts: dict[str, np.ndarray]) -> BatchTargets | None:
        """A frame's parts read back, as views on its payload; None when the frame carries no targets."""
        if not parts:
            return None
        ragged: dict[str, list[np.ndarray] | None] = {}
        for kind, labels_name, _ in RAGGED:
            offsets = parts.get(f"{kind}_offsets")
            for name in (kind, labels_name):
                values = parts.get(name)
                ragged[name] = None if offsets is None or values is None else _split(values, offsets)
        return cls(masks=parts.get("masks"), **ragged)


RAGGED = (("boxes", "box_labels", 4), ("keypoints", "keypoint_labels", 2))  # kind, its labels, values per row


def _split(values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [values[start:stop] for start, stop in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)]


def _rows(rows: list[np.ndarray], width: int | None, dtype: type) -> np.ndarray:
    """Every sample's rows, one after another: (total, width), or (total,) for labels."""
    shape = (-1,) if width is None else (-1, width)
    empty = np.zeros((0,) if width is None else (0, width), dtype)
    return np.concatenate([empty, *(np.asarray(row, dtype).reshape(shape) for row in rows)])
