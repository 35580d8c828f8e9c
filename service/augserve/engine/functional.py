"""Pure pixel functions on numpy arrays: array and parameters in, array out; no transform classes, no state.

They are albumentations' own geometry, done faster where OpenCV allows it, and always to the same pixels:

- :func:`warp_affine` warps RGB images as RGBA. OpenCV remaps 1- and 4-channel 8-bit images with vector
  instructions and 3-channel ones without, and it warps each channel alike, so the RGB channels come out
  bit-identical for every interpolation and border (``tests/test_warps.py``).
- :func:`translate` moves an image by whole pixels. albumentations truncates shifts to whole pixels, which a
  warp computes as an interpolation whose weights are all 0 but one; moving the pixels and filling the
  uncovered band by OpenCV's border rule gives the same bytes for far less work.
- :func:`render_window` makes a crop's window of the image that a run of flips and a rotation would have
  made, from the untouched source, in one resampling (see :mod:`augserve.engine.transforms` for why).

How much each saves is measured in ``bench/`` and listed in docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations.augmentations.crops.functional as fcrops
import albumentations.augmentations.geometric.functional as fgeometric
import cv2
import numpy as np
from albucore import hflip, vflip

EYE = np.eye(3)


def is_identity(matrix: np.ndarray) -> bool:
    """albumentations' ``is_identity_matrix`` (``np.allclose`` to the identity) in one numpy expression:
    ``np.allclose`` is Python-heavy, holds the GIL, and every warp asked it twice."""
    return bool((np.abs(matrix - EYE) <= 1e-8 + 1e-5 * EYE).all())


def warp_affine(
    image: np.ndarray,
    matrix: np.ndarray,
    interpolation: int,
    fill: Any,
    border_mode: int,
    output_shape: tuple[int, int],
) -> np.ndarray:
    """``albumentations.augmentations.geometric.functional.warp_affine``, faster for HxWx3 uint8 images."""
    rgb = image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    if not rgb or interpolation & cv2.WARP_INVERSE_MAP:
        return fgeometric.warp_affine(image, matrix, interpolation, fill, border_mode, output_shape)
    if is_identity(matrix):
        return image
    shift = whole_pixel_shift(matrix, image.shape[:2], output_shape)
    if shift is not None:
        return translate(image, *shift, border_mode, fgeometric.extend_value(fill, 3))
    size = (round(output_shape[1]), round(output_shape[0]))
    border = fgeometric.extend_value(fill, 4)
    rgba = cv2.cvtColor(without_lone_pixels(image, interpolation, border_mode), cv2.COLOR_RGB2RGBA)
    warped = cv2.warpAffine(rgba, matrix[:2], size, flags=interpolation, borderMode=border_mode, borderValue=border)
    return cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB)


def without_lone_pixels(image: np.ndarray, interpolation: int, border_mode: int) -> np.ndarray:
    """``image`` with a side of 1 pixel doubled, for a cubic warp with ``BORDER_REFLECT_101``, which OpenCV 5.0
    never finishes on a 3- or 4-channel image with such a side (a pool thread lost for good). That border
    reflects a 1-pixel side onto itself at every offset, and a 2-pixel side of equal pixels onto one of them:
    the warp reads the same values, so the result is the same."""
    if interpolation != cv2.INTER_CUBIC or border_mode != cv2.BORDER_REFLECT_101:
        return image
    for axis in (0, 1):
        if image.shape[axis] == 1:
            image = np.repeat(image, 2, axis=axis)
    return image


def whole_pixel_shift(
    matrix: np.ndarray, shape: tuple[int, ...], output_shape: tuple[int, int]
) -> tuple[int, int] | None:
    """``(dx, dy)`` when ``matrix`` moves the image by whole pixels, less than its size, onto an output of the
    same size; else None. (OpenCV's cubic warp treats points far outside the image its own way.)"""
    height, width = shape
    dx, dy = float(matrix[0, 2]), float(matrix[1, 2])
    exact = bool((matrix[:, :2] == EYE[:, :2]).all()) and dx.is_integer() and dy.is_integer()
    if not exact or tuple(output_shape) != (height, width) or abs(dx) >= width or abs(dy) >= height:
        return None
    return int(dx), int(dy)


def translate(image: np.ndarray, dx: int, dy: int, border_mode: int, fill: Any) -> np.ndarray:
    """``image`` moved ``dx`` pixels right and ``dy`` down, the uncovered band filled per ``border_mode``."""
    height, width = image.shape[:2]
    top, bottom, left, right = max(dy, 0), max(-dy, 0), max(dx, 0), max(-dx, 0)
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, border_mode, value=fill)
    return np.ascontiguousarray(padded[bottom : bottom + height, right : right + width])


def mirror(size: int, axis: int) -> np.ndarray:
    """The 3x3 matrix reversing pixel centres along ``axis`` (0: x, 1: y): ``c -> size - 1 - c``."""
    matrix = np.eye(3)
    matrix[axis, axis] = -1.0
    matrix[axis, 2] = size - 1.0
    return matrix


def render_window(
    image: np.ndarray,
    matrix: np.ndarray,
    box: Sequence[int],
    size: tuple[int, int],
    interpolation: int,
    warp: tuple[Any, int] | None,
) -> np.ndarray:
    """The window ``box`` (x_min, y_min, x_max, y_max) of the image that ``matrix`` (3x3, source pixel centres
    to those of the image the crop would have seen) makes of ``image``, resized to ``size`` (height, width).

    ``warp`` is the rotation's ``(fill, border_mode)`` when the run holds one; without it ``matrix`` is flips
    alone, which move to the small output instead of resampling anything."""
    if warp is None:
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
    fill, border_mode = warp
    return warp_affine(image, combined, interpolation, fill, border_mode, size)


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
    # OpenCV's flips, as albumentations' own: making numpy's reversed-column view contiguous costs more.
    out = vflip(out) if flips[1] else out
    return hflip(out) if flips[0] else out
