"""Affine warps of RGB images, done in RGBA.

OpenCV's ``warpAffine`` remaps 1- and 4-channel 8-bit images with vector instructions, and 3-channel ones
without: a 224x224 bilinear warp took 272 us in 3 channels and 125 us in 4 here, and a rotated window of a
560x480 photo 193 against 102 us. Adding the alpha channel and dropping it again costs ~4 us at 224x224 (45 us
for the whole photo), and OpenCV warps each channel alike, so the RGB channels come out bit-identical for
every interpolation and border (``tests/test_warps.py``). The engine's warps therefore go through
:func:`warp_affine`, which is albumentations' ``warp_affine`` with that detour for RGB images.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import albumentations.augmentations.geometric.functional as fgeometric
import cv2
import numpy as np


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
    if not rgb or fgeometric.is_identity_matrix(matrix):
        return fgeometric.warp_affine(image, matrix, interpolation, fill, border_mode, output_shape)
    rgba = cv2.cvtColor(image, cv2.COLOR_RGB2RGBA)
    warped = fgeometric.warp_affine(rgba, matrix, interpolation, fill, border_mode, output_shape)
    return cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB)


class Affine(A.Affine):
    """``A.Affine`` warping through :func:`warp_affine`."""

    def apply(self, img: np.ndarray, matrix: np.ndarray, output_shape: tuple[int, int], **params: Any) -> np.ndarray:
        return warp_affine(img, matrix, self.interpolation, self.fill, self.border_mode, output_shape)


class Rotate(A.Rotate):
    """``A.Rotate`` warping through :func:`warp_affine` (without ``crop_border``, which the engine never sets)."""

    def apply(self, img: np.ndarray, matrix: np.ndarray, **params: Any) -> np.ndarray:
        return warp_affine(img, matrix, self.interpolation, self.fill, self.border_mode, params["shape"][:2])
