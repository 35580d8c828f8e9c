"""A real photo with a painted object, its mask, its box and a marked keypoint, and the checks that a variant's
targets still describe what its pixels show. Shared by the engine's and the HTTP API's target tests."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

OBJECT = np.array([255, 0, 255])  # magenta: no sample photo holds it
MARKER = np.array([0, 255, 255])  # cyan
OBJECT_BOX = (70, 50, 150, 110)  # pascal_voc: columns 70..149, rows 50..109
MARKER_AT = (190, 150)  # x, y: the centre of a 5x5 cyan patch
CLASS = 7


@dataclass(frozen=True)
class Scene:
    image: np.ndarray
    mask: np.ndarray

    @property
    def box(self) -> list[float]:
        return [float(v) for v in OBJECT_BOX]


def painted(photo: np.ndarray, height: int = 200, width: int = 240) -> Scene:
    """``photo`` shrunk to ``height`` x ``width``, the object painted over it, the marker beside it."""
    image = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)
    assert not near(image, OBJECT).any() and not near(image, MARKER).any(), "the photo holds the paint colours"
    x_min, y_min, x_max, y_max = OBJECT_BOX
    image[y_min:y_max, x_min:x_max] = OBJECT
    x, y = MARKER_AT
    image[y - 2 : y + 3, x - 2 : x + 3] = MARKER
    mask = np.zeros((height, width), np.uint8)
    mask[y_min:y_max, x_min:x_max] = CLASS
    return Scene(np.ascontiguousarray(image), mask)


def near(image: np.ndarray, colour: np.ndarray, tolerance: float = 60.0) -> np.ndarray:
    return np.linalg.norm(image.astype(np.float32) - colour, axis=-1) < tolerance


def away_from_edges(mask: np.ndarray, band: int = 2) -> np.ndarray:
    """Pixels at least ``band`` pixels from any edge of the mask's regions (and from the image's border)."""
    kernel = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    binary = (mask > 0).astype(np.uint8)
    inside = cv2.erode(binary, kernel, borderType=cv2.BORDER_REPLICATE)
    outside = 1 - cv2.dilate(binary, kernel, borderType=cv2.BORDER_REPLICATE)
    keep = (inside | outside).astype(bool)
    keep[:band], keep[-band:], keep[:, :band], keep[:, -band:] = False, False, False, False
    return keep


def mask_agreement(image: np.ndarray, mask: np.ndarray) -> float:
    """The share of pixels, away from edges, where "painted" and "in the mask" agree."""
    keep = away_from_edges(mask)
    painted_pixels = near(image, OBJECT)
    agree = painted_pixels[keep] == (mask[keep] == CLASS)
    return float(agree.mean()) if agree.size else 1.0


def painted_core(image: np.ndarray) -> np.ndarray:
    """(x, y) of the object's pixels that are painted through and through (their 3x3 neighbourhood too)."""
    painted_pixels = near(image, OBJECT, 30.0).astype(np.uint8)
    core = cv2.erode(painted_pixels, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    ys, xs = np.nonzero(core)
    return np.stack([xs, ys], axis=1)


def inside_some_box(points: np.ndarray, boxes: list[list[float]], slack: float = 1.0) -> bool:
    """Every pixel (x, y) lies within one of the pascal_voc ``boxes`` (pixel x covers [x, x + 1))."""
    if len(points) == 0:
        return True
    covered = np.zeros(len(points), bool)
    for x_min, y_min, x_max, y_max in boxes:
        covered |= (
            (points[:, 0] >= x_min - slack)
            & (points[:, 0] + 1 <= x_max + slack)
            & (points[:, 1] >= y_min - slack)
            & (points[:, 1] + 1 <= y_max + slack)
        )
    return bool(covered.all())


def marker_within(image: np.ndarray, point: list[float], radius: float) -> bool:
    """A marker pixel lies within ``radius`` of keypoint ``point`` (x, y, pixel-centre coordinates)."""
    ys, xs = np.nonzero(near(image, MARKER))
    if len(xs) == 0:
        return False
    return bool((np.hypot(xs - point[0], ys - point[1]) <= radius).any())


def marker_centre_visible(image: np.ndarray) -> bool:
    """The marker shows away from the image's border (so its centre, the keypoint, is on the image)."""
    ys, xs = np.nonzero(near(image, MARKER, 30.0))
    height, width = image.shape[:2]
    inner = (xs >= 3) & (xs < width - 3) & (ys >= 3) & (ys < height - 3)
    return bool(inner.any())
