"""Deferred geometry: flips and a rotation that a random resized crop follows are resampled once, by the crop.

Why: rotating a 640 px photo by a few degrees and then cutting a 224 px window out of it resamples every pixel
of the photo to keep a fraction of them. In the benchmark's spec that full-size warp was about two thirds of
the engine's time. The deferred transforms below still draw their parameters exactly as albumentations does
(same seeds, same ``applied`` descriptions), but instead of resampling they record what they would do in the
pipeline's :class:`Deferred`. The crop, which knows its window, then renders the run in one step
(:func:`render`):

- flips alone: the window is mirrored instead of the image, cropped and resized, and the small result
  flipped. When the window shrinks (the usual case) with linear interpolation, these are exactly the pixels
  of flipping first; otherwise OpenCV's fixed-point weights, not quite symmetric, can differ by one grey level.
- with a rotation: one ``warpAffine`` of the source through the composed matrix (flips, rotation, window,
  resize) straight onto the output size. The variant is interpolated once instead of twice (rotate, then
  resize), so it is a little sharper; the geometry, the border and the fill are the rotation's own.

:func:`deferrable` decides, when a spec is compiled, which ops may wait.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import albumentations.augmentations.crops.functional as fcrops
import albumentations.augmentations.geometric.functional as fgeometric
import numpy as np
from albucore import hflip, vflip
from augserve_client.spec import Crop, Op, Reflect, Rotate

from . import warps
from .warps import is_identity, warp_affine


class Deferred:
    """The geometry recorded so far for one variant: a 3x3 matrix taking source pixel centres to those of the
    image the crop would have seen, and the rotation (if any) whose border, fill and interpolation apply.

    A pipeline makes one variant at a time in one thread, so its transforms share one instance.
    """

    def __init__(self) -> None:
        self.matrix = np.eye(3)
        self.rotation: A.Rotate | None = None

    def clear(self) -> None:
        self.matrix = np.eye(3)
        self.rotation = None

    def then(self, matrix: np.ndarray) -> None:
        self.matrix = matrix @ self.matrix


def deferrable(ops: Sequence[Op]) -> set[int]:
    """Indices of the ops that defer to a crop after them, and of those crops.

    A run qualifies when it is reflects and at most one range rotation, directly before a random resized crop
    that always applies (a skipped crop would leave the run undone). Two rotations are not one: the second
    turns the first one's filled corners. The rotation must resample the way the crop does, and not by area,
    which ``warpAffine`` cannot do. A ``nearest`` crop never qualifies: cv2.resize's nearest neighbour picks
    ``floor(dst * scale)``, not the pixel-centre mapping, so it neither commutes with a flip nor matches a warp.
    """
    chosen: set[int] = set()
    for index, crop in enumerate(ops):
        if not (isinstance(crop, Crop) and crop.mode == "random_resized" and crop.p == 1.0):
            continue
        if crop.interpolation == "nearest":
            continue
        run, rotated = [], False
        for before in range(index - 1, -1, -1):
            op = ops[before]
            rotation = isinstance(op, Rotate) and op.right_angles is None and not rotated
            if rotation and (op.interpolation != crop.interpolation or op.interpolation == "area"):
                break
            if not (rotation or isinstance(op, Reflect)):
                break
            rotated |= rotation
            run.append(before)
        chosen.update([*run, index] if run else [])
    return chosen


def _mirror(size: int, axis: int) -> np.ndarray:
    """Reverse pixel centres along ``axis`` (0: x, 1: y): ``c -> size - 1 - c``."""
    matrix = np.eye(3)
    matrix[axis, axis] = -1.0
    matrix[axis, 2] = size - 1.0
    return matrix


class _DeferredFlip:
    """Records a flip of pixel centres along ``axis`` (0: columns, 1: rows) instead of flipping."""

    axis: int

    def __init__(self, p: float, deferred: Deferred) -> None:
        super().__init__(p=p)  # type: ignore[call-arg]  # the albumentations flip this is mixed into
        self.deferred = deferred

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        size = img.shape[1 - self.axis]
        self.deferred.then(_mirror(size, self.axis))
        return img


class DeferredHorizontalFlip(_DeferredFlip, A.HorizontalFlip):
    axis = 0


class DeferredVerticalFlip(_DeferredFlip, A.VerticalFlip):
    axis = 1


class DeferredRotate(warps.Rotate):
    def __init__(self, deferred: Deferred, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deferred = deferred

    def apply(self, img: np.ndarray, matrix: np.ndarray, **params: Any) -> np.ndarray:
        self.deferred.then(matrix)
        self.deferred.rotation = self
        return img


def render(
    deferred: Deferred, image: np.ndarray, box: Sequence[int], size: tuple[int, int], interpolation: int
) -> np.ndarray:
    """The window ``box`` (x_min, y_min, x_max, y_max) of the image the deferred ops would have made, resized
    to ``size`` (height, width), made from the untouched source ``image`` in one resampling."""
    matrix, rotation = deferred.matrix, deferred.rotation
    deferred.clear()
    if rotation is None:
        return _flipped_window(image, box, size, interpolation, (matrix[0, 0] < 0, matrix[1, 1] < 0))
    x_min, y_min, x_max, y_max = box
    scale_x, scale_y = size[1] / (x_max - x_min), size[0] / (y_max - y_min)
    # Window then resize, in cv2.resize's pixel-centre convention: dst = (src - min + 0.5) * scale - 0.5.
    window = np.array(
        [[scale_x, 0.0, (0.5 - x_min) * scale_x - 0.5], [0.0, scale_y, (0.5 - y_min) * scale_y - 0.5], [0, 0, 1]]
    )
    combined = window @ matrix
    if is_identity(combined):  # warp_affine would hand back the whole source, not the window
        return fcrops.crop(image, 0, 0, size[1], size[0])
    return warp_affine(image, combined, interpolation, rotation.fill, rotation.border_mode, size)


def _flipped_window(
    image: np.ndarray, box: Sequence[int], size: tuple[int, int], interpolation: int, flips: tuple[bool, bool]
) -> np.ndarray:
    """Flipping, then cropping ``box`` equals cropping the mirrored box, then flipping; and a resize commutes
    with a flip. So the flip moves to the small output."""
    x_min, y_min, x_max, y_max = box
    height, width = image.shape[:2]
    if flips[0]:
        x_min, x_max = width - x_max, width - x_min
    if flips[1]:
        y_min, y_max = height - y_max, height - y_min
    out = fgeometric.resize(fcrops.crop(image, x_min, y_min, x_max, y_max), size, interpolation)
    # OpenCV's flips, as albumentations' own: numpy's reversed-column view costs 0.2 ms to make contiguous.
    out = vflip(out) if flips[1] else out
    return hflip(out) if flips[0] else out
