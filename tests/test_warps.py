"""RGB warps done in RGBA (augserve.engine.functional) give exactly the pixels of OpenCV's 3-channel warp, and
the engine's rotations and shifts exactly those of plain albumentations with the same seeds."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import albumentations as A
import albumentations.augmentations.geometric.functional as fgeometric
import cv2
import numpy as np
import pytest
from augserve.engine import BORDERS, INTERPOLATIONS, Pipeline
from augserve.engine import functional as warps
from augserve_client.protocol.spec import Spec

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


@pytest.mark.parametrize("interpolation", sorted(set(INTERPOLATIONS) - {"area"}))
@pytest.mark.parametrize("border", sorted(BORDERS))
@pytest.mark.parametrize("fill", [0, 200, (10, 120, 250)], ids=["0", "200", "rgb"])
def test_whole_pixel_shifts_are_bit_identical_to_the_warp(interpolation: str, border: str, fill: Any) -> None:
    """Every shift the spec allows (up to the whole image), and beyond it, where the warp is used after all."""
    image = photo(61, 90)
    for dx, dy in [(12, -7), (-3, 0), (0, 5), (89, -60), (-89, 60), (-90, 3), (0, 61), (200, -100)]:
        matrix = np.array([[1.0, 0, dx], [0, 1, dy], [0, 0, 1]])
        args = (matrix, INTERPOLATIONS[interpolation], fill, BORDERS[border], (61, 90))
        fast = abs(dx) < 90 and abs(dy) < 61
        assert warps.whole_pixel_shift(matrix, image.shape[:2], (61, 90)) == ((dx, dy) if fast else None)
        np.testing.assert_array_equal(warps.warp_affine(image, *args), fgeometric.warp_affine(image, *args))


def test_only_whole_pixel_moves_onto_the_same_size_are_shifts() -> None:
    assert warps.whole_pixel_shift(SHIFT, (224, 224), (224, 224)) is None  # fractional
    assert warps.whole_pixel_shift(TURN, (224, 224), (224, 224)) is None
    assert warps.whole_pixel_shift(np.array([[1.0, 0, 3], [0, 1, 2], [0, 0, 1]]), (224, 224), (100, 100)) is None


def finishes(work: Callable[[], np.ndarray], seconds: float = 20.0) -> np.ndarray:
    """``work()``'s result, failing (not hanging the suite) when it does not return in time."""
    result: list[np.ndarray] = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, f"did not finish in {seconds} s"
    return result[0]


@pytest.mark.parametrize("shape", [(1, 1), (1, 51), (51, 1)])
def test_a_cubic_reflected_warp_of_a_one_pixel_side_finishes_with_the_same_pixels(shape: tuple[int, int]) -> None:
    """OpenCV 5.0 never returns from this warp on such an image; doubling the lone pixel gives the same
    samples. Checked against what cannot differ: replicating a 1x1 image, and tripling the pixel instead."""
    image = photo(51, 51)[: shape[0], : shape[1]].copy()
    turn = np.vstack([cv2.getRotationMatrix2D((shape[1] / 2, shape[0] / 2), 10.0, 1.0), [0, 0, 1]])
    args = (turn, cv2.INTER_CUBIC, 0, cv2.BORDER_REFLECT_101, (40, 40))
    got = finishes(lambda: warps.warp_affine(image, *args))
    tripled = np.repeat(np.repeat(image, 3 if shape[0] == 1 else 1, axis=0), 3 if shape[1] == 1 else 1, axis=1)
    np.testing.assert_array_equal(got, fgeometric.warp_affine(tripled, *args))
    if shape == (1, 1):
        replicated = fgeometric.warp_affine(image, turn, cv2.INTER_CUBIC, 0, cv2.BORDER_REPLICATE, (40, 40))
        np.testing.assert_array_equal(got, replicated)


def test_the_engine_rotates_a_one_pixel_high_image_cubically_with_reflection() -> None:
    spec = {"op": "rotate", "angle": [5, 15], "interpolation": "cubic", "border": "reflect", "p": 1.0}
    pipeline = Pipeline(Spec.model_validate({"ops": [spec]}))
    assert finishes(lambda: pipeline.image(photo(1, 64), 0)).shape == (1, 64, 3)


def test_an_inverse_map_flag_is_left_to_albumentations() -> None:
    image = photo()
    args = (np.array([[1.0, 0, 5], [0, 1, 3], [0, 0, 1]]), cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, 0, 0, (240, 280))
    np.testing.assert_array_equal(warps.warp_affine(image, *args), fgeometric.warp_affine(image, *args))


def test_an_identity_warp_and_other_images_are_left_to_albumentations() -> None:
    image = photo()
    assert warps.warp_affine(image, np.eye(3), cv2.INTER_LINEAR, 0, cv2.BORDER_CONSTANT, (240, 280)) is image
    grey = photo()[..., 0]
    args = (SHIFT, cv2.INTER_LINEAR, 0, cv2.BORDER_REFLECT_101, (240, 280))
    np.testing.assert_array_equal(warps.warp_affine(grey, *args), fgeometric.warp_affine(grey, *args))


@pytest.mark.parametrize(
    "offset",
    [(0, 0, 0), (1, 1, 1e-9), (0, 0, 5e-6), (1, 0, 1e-7), (0, 2, 1e-7), (0, 2, 2e-9), (2, 2, 2e-5), (1, 1, -3e-6)],
)
def test_is_identity_agrees_with_albumentations(offset: tuple[int, int, float]) -> None:
    row, col, delta = offset
    matrix = np.eye(3)
    matrix[row, col] += delta
    assert warps.is_identity(matrix) == fgeometric.is_identity_matrix(matrix)
    assert not warps.is_identity(TURN) and not warps.is_identity(SHIFT)


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
