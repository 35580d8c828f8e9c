"""JPEG decoding through libjpeg-turbo (simplejpeg), outside the GIL, optionally DCT-scaled.

Pillow decodes a JPEG in 64 KB slices driven from Python, holding the GIL between them, and hands out a copy;
simplejpeg decodes the whole file in one call that releases the GIL, into one fresh array. Both use the same
libjpeg-turbo settings (accurate integer IDCT, fancy upsampling), so the pixels are the same
(``tests/test_codecs.py``). libjpeg-turbo can also decode straight to a fraction of the size (M/8, in the IDCT,
far cheaper than decoding in full and shrinking): :func:`decode` takes the smallest size the caller needs.

Only what Pillow reads as a plain JPEG in RGB or L comes here; CMYK, MPO, and anything simplejpeg refuses (a
truncated file, an odd marker) goes through Pillow as before, so its errors and its pixels are unchanged.
EXIF orientation is applied here as ``ImageOps.exif_transpose`` does: lossless moves of whole pixels.
"""

from __future__ import annotations

import math

import numpy as np
import simplejpeg
from PIL import Image

ORIENTATION = 0x0112
TURNED = (5, 6, 7, 8)  # orientations that swap width and height


def takes(image: Image.Image) -> bool:
    """Whether :func:`decode` may decode ``image`` (Pillow's lazily opened view) instead of Pillow."""
    return image.format == "JPEG" and image.mode in ("RGB", "L")


def orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8; 1 when absent or invalid)."""
    value = image.getexif().get(ORIENTATION, 1)
    return value if value in range(1, 9) else 1


def decode(data: bytes, turn: int, min_size: tuple[int, int] | None = None, fast: bool = False) -> np.ndarray | None:
    """The RGB pixels of ``data`` with EXIF orientation ``turn`` applied, or None when libjpeg-turbo refuses the
    file (the caller then asks Pillow, which has its own rules for damaged files).

    ``min_size`` (height, width, after orientation): decode at the smallest M/8 scale that still covers it.
    ``fast``: libjpeg-turbo's fast integer IDCT and plain chroma upsampling, not Pillow's pixels any more."""
    options: dict[str, int | bool] = {"fastdct": fast, "fastupsample": fast}
    if min_size is not None:
        height, width = min_size if turn not in TURNED else min_size[::-1]
        options |= {"min_height": height, "min_width": width}
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", **options)
    except ValueError:
        return None
    return oriented(pixels, turn)


def oriented(pixels: np.ndarray, turn: int) -> np.ndarray:
    """``pixels`` as EXIF orientation ``turn`` says to show them (Pillow's ``exif_transpose``), contiguous."""
    moved = {
        1: pixels,
        2: pixels[:, ::-1],
        3: pixels[::-1, ::-1],
        4: pixels[::-1],
        5: pixels.transpose(1, 0, 2),
        6: pixels.transpose(1, 0, 2)[:, ::-1],
        7: pixels[::-1, ::-1].transpose(1, 0, 2),
        8: pixels.transpose(1, 0, 2)[::-1],
    }[turn]
    return np.ascontiguousarray(moved)


def scaled_size(size: tuple[int, int], eighths: int) -> tuple[int, int]:
    """libjpeg-turbo's output size at scale ``eighths``/8: each side rounded up."""
    return math.ceil(size[0] * eighths / 8), math.ceil(size[1] * eighths / 8)
