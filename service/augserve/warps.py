"""Affine warps of RGB images, done in RGBA.

OpenCV's ``warpAffine`` remaps 1- and 4-channel 8-bit images with vector instructions, and 3-channel ones
without: a 224x224 bilinear warp took 272 us in 3 channels and 125 us in 4 here, and a rotated window of a
560x480 photo 193 against 102 us. Adding the alpha channel and dropping it again costs ~4 us at 224x224 (45 us
for the whole photo), and OpenCV warps each channel alike, so the RGB channels come out bit-identical for
every interpolation and border (``tests/test_warps.py``). The engine's warps therefore go through
:func:`warp_affine`, which is albumentations' ``warp_affine`` with that detour for RGB images.

A shift is a whole-pixel translation (albumentations truncates shifts to pixels), which a warp computes as
an interpolation whose weights are all 0 but one: :func:`translate` moves the pixels and fills the uncovered
band with OpenCV's border rule instead, 11-13 us against 125 us as RGBA (280 us in 3 channels), bit-identical.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import albumentations.augmentations.geometric.functional as fgeometric
import cv2
import numpy as np

EYE = np.eye(3)


def is_identity(matrix: np.ndarray) -> bool:
    """albumentations' ``is_identity_matrix`` (``np.allclose`` to the identity), in one numpy expression:
    ``np.allclose`` costs ~15 us of Python per call, holding the GIL, and every warp asked it twice."""
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


class Affine(A.Affine):
    """``A.Affine`` warping through :func:`warp_affine`, drawing only the image's matrix."""

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """albumentations' draws, in its order, and the image's matrix alone: ``A.Affine`` also builds one for
        bounding boxes (~25 us of Python, holding the GIL) that images never use. The engine never sets
        ``fit_output``, the only other thing it would do."""
        shape = params["shape"][:2]
        translate = self._get_translate_params(shape)
        shear = self._get_shear_params()
        scale = self._get_scale(self.scale, self.keep_ratio, self.balanced_scale, self.py_random)
        rotate = self.py_random.uniform(*self.rotate)
        center = fgeometric.center(shape)
        matrix = fgeometric.create_affine_transformation_matrix(translate, shear, scale, rotate, center)
        return {"rotate": rotate, "scale": scale, "matrix": matrix, "output_shape": shape}

    def apply(self, img: np.ndarray, matrix: np.ndarray, output_shape: tuple[int, int], **params: Any) -> np.ndarray:
        return warp_affine(img, matrix, self.interpolation, self.fill, self.border_mode, output_shape)


class Rotate(A.Rotate):
    """``A.Rotate`` warping through :func:`warp_affine`, drawing only the image's matrix (the engine never sets
    ``crop_border``)."""

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """albumentations' one draw, and the image's matrix without the bounding boxes' one (see Affine)."""
        angle = self.py_random.uniform(*self.limit)
        still, unscaled = {"x": 0, "y": 0}, {"x": 1, "y": 1}
        center = fgeometric.center(params["shape"][:2])
        matrix = fgeometric.create_affine_transformation_matrix(still, still, unscaled, angle, center)
        return {"x_min": -1, "x_max": -1, "y_min": -1, "y_max": -1, "matrix": matrix}

    def apply(self, img: np.ndarray, matrix: np.ndarray, **params: Any) -> np.ndarray:
        return warp_affine(img, matrix, self.interpolation, self.fill, self.border_mode, params["shape"][:2])
