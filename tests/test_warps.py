"""RGB warps done in RGBA (augserve.warps) give exactly the pixels of OpenCV's 3-channel warp, and the engine's
rotations and shifts exactly those of plain albumentations with the same seeds."""

from __future__ import annotations

import random
from typing import Any

import albumentations as A
import albumentations.augmentations.geometric.functional as fgeometric
import cv2
import numpy as np
import pytest
from augserve import warps
from augserve.engine import BORDERS, INTERPOLATIONS, Pipeline
from augserve_client.spec import Spec

# A turn of 10 degrees that also scales 560 px to 224 and moves the window: what the fused crop does.
TURN = np.vstack([cv2.getRotationMatrix2D((280, 240), 10, 0.4) - [[0, 0, 80], [0, 0, 60]], [0, 0, 1]])
SHIFT = np.array([[1, 0, 12.3], [0, 1, -7.7], [0, 0, 1]])  # the shift op: a fractional translation


def photo(height: int = 240, width: int = 280) -> np.ndarray:
    """Smooth noise: interpolation has real work to do, and every channel differs."""
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(image, (5, 5), 1.5)


@pytest.mark.parametrize("interpolation", sorted(set(INTERPOLATIONS) - {"area"}))
@pytest.mark.parametrize("border", sorted(BORDERS))
@pytest.mark.parametrize("fill", [0, 200, (10, 120, 250)], ids=["0", "200", "rgb"])
@pytest.mark.parametrize("matrix", [TURN, SHIFT], ids=["turn", "shift"])
def test_rgb_warps_are_bit_identical_to_the_three_channel_warp(
    interpolation: str, border: str, fill: Any, matrix: np.ndarray
) -> None:
    image = photo()
    args = (matrix, INTERPOLATIONS[interpolation], fill, BORDERS[border], (224, 224))
    expected = fgeometric.warp_affine(image, *args)
    got = warps.warp_affine(image, *args)
    assert got.shape == expected.shape == (224, 224, 3) and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)


def test_an_identity_warp_and_other_images_are_left_to_albumentations() -> None:
    image = photo()
    assert warps.warp_affine(image, np.eye(3), cv2.INTER_LINEAR, 0, cv2.BORDER_CONSTANT, (240, 280)) is image
    grey = photo()[..., 0]
    args = (SHIFT, cv2.INTER_LINEAR, 0, cv2.BORDER_REFLECT_101, (240, 280))
    np.testing.assert_array_equal(warps.warp_affine(grey, *args), fgeometric.warp_affine(grey, *args))


@pytest.mark.parametrize(
    ("op", "plain"),
    [
        (
            {"op": "shift", "x": [-0.2, 0.2], "y": [-0.2, 0.2], "border": "reflect"},
            A.Affine(translate_percent={"x": (-0.2, 0.2), "y": (-0.2, 0.2)}, border_mode=cv2.BORDER_REFLECT_101),
        ),
        (
            {"op": "rotate", "angle": [-30, 30], "fill": [0, 255, 0]},
            A.Rotate(limit=(-30, 30), border_mode=cv2.BORDER_CONSTANT, fill=(0, 255, 0)),
        ),
    ],
    ids=["shift", "rotate"],
)
def test_the_engine_warps_exactly_as_plain_albumentations(op: dict[str, Any], plain: A.BasicTransform) -> None:
    """Same seeds, same draws, same pixels: the RGBA detour changes the speed, nothing else."""
    pipeline = Pipeline(Spec.model_validate({"ops": [{**op, "p": 1.0}]}))
    plain.p = 1.0
    transform = A.Compose([plain])
    image = photo()
    for seed in range(6):
        transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
        np.testing.assert_array_equal(pipeline.image(image, seed), transform(image=image)["image"])
