"""Masks, boxes and keypoints as a pipeline takes and gives them, and albumentations' processors for them.

The rules come from the spec's ``targets`` section (:class:`augserve_client.protocol.targets.TargetRules`);
they map one to one onto albumentations' ``BboxParams`` and ``KeypointParams``, so boxes are clipped, filtered
by visibility and area, and converted back to the request's format exactly as albumentations does it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import albumentations as A
import numpy as np
from augserve_client.protocol.targets import ImageTargets, Label, TargetRules


@dataclass(frozen=True)
class Targets:
    """What moves with one image: a HxW uint8 mask, (k, 4) boxes with k labels, (m, 2) keypoints."""

    mask: np.ndarray | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    labels: list[Label] = field(default_factory=list)
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    keypoint_labels: list[Label] | None = None

    @classmethod
    def of(cls, targets: ImageTargets | None, mask: np.ndarray | None = None) -> Targets:
        """The engine's form of a request's targets (``None``: no boxes, no keypoints)."""
        if targets is None:
            return cls(mask=mask)
        return cls(
            mask=mask,
            boxes=np.array(targets.boxes, dtype=np.float64).reshape(-1, 4),
            labels=list(targets.labels),
            keypoints=np.array(targets.keypoints, dtype=np.float64).reshape(-1, 2),
            keypoint_labels=None if targets.keypoint_labels is None else list(targets.keypoint_labels),
        )

    def inputs(self) -> dict[str, Any]:
        """The keyword arguments a Compose built with :func:`processors` takes, besides the image."""
        points = len(self.keypoints)
        data: dict[str, Any] = {
            "bboxes": self.boxes,
            "labels": self.labels,
            "keypoints": self.keypoints,
            "keypoint_labels": self.keypoint_labels if self.keypoint_labels is not None else [None] * points,
        }
        if self.mask is not None:
            data["mask"] = self.mask
        return data

    def replaced(self, out: dict[str, Any]) -> Targets:
        """These targets as a Compose call returned them."""
        return Targets(
            mask=np.ascontiguousarray(out["mask"]) if self.mask is not None else None,
            boxes=np.asarray(out["bboxes"], dtype=np.float64).reshape(-1, 4),
            labels=list(out["labels"]),
            keypoints=np.asarray(out["keypoints"], dtype=np.float64).reshape(-1, 2),
            keypoint_labels=None if self.keypoint_labels is None else list(out["keypoint_labels"]),
        )

    def described(self) -> dict[str, Any]:
        """Boxes, labels and keypoints as JSON values (the mask travels on its own)."""
        described: dict[str, Any] = {
            "boxes": [[float(v) for v in box] for box in self.boxes],
            "labels": self.labels,
            "keypoints": [[float(v) for v in point] for point in self.keypoints],
        }
        if self.keypoint_labels is not None:
            described["keypoint_labels"] = self.keypoint_labels
        return described


def processors(rules: TargetRules) -> dict[str, Any]:
    """``bbox_params`` and ``keypoint_params`` for a Compose, from the spec's rules."""
    boxes = A.BboxParams(
        format=rules.box_format,
        label_fields=["labels"],
        min_visibility=rules.min_visibility,
        min_area=rules.min_area,
        clip=rules.clip,
    )
    points = A.KeypointParams(
        format="xy", label_fields=["keypoint_labels"], remove_invisible=rules.drop_outside_keypoints
    )
    return {"bbox_params": boxes, "keypoint_params": points}
