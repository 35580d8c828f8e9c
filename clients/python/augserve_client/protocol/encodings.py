"""Encoded batch frames' images: the codecs, and decoding a frame's payload into its raw pixels.

A raw batch is 150 KB per 224x224 variant: one 10 GbE link carries ~8k of them a second. An encoded batch
frame carries every image encoded on its own (so the pool parts of a batch encode their own images, and the
bytes do not depend on how a batch was split), one after another, ``sizes[i]`` bytes each:

* ``zstd``: lossless. Each image's rows as differences from the row above, mod 256 (PNG's "up" filter:
  photos are smooth, and the differences compress 2.2x where the pixels alone give 1.45x, for the same
  CPU), then a zstd frame at level ZSTD_LEVEL. Decoded pixels are the raw pixels, byte for byte.
* ``jpeg``: lossy, libjpeg-turbo (simplejpeg) at ``quality``, 4:4:4 (no chroma subsampling), RGB.

The codecs are imported on first use, never with this module: the protocol stays light for readers that
never see an encoded frame, and a client without the package gets one line naming the pip install.
"""

from __future__ import annotations

import importlib
import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import ProtocolError

ENCODINGS = ("raw", "zstd", "jpeg")
# Level 1, measured on the benchmark's variants (bench/encodings.py "levels"): levels 2 and 3 save 1% of the
# bytes for 1.5x and 2-2.5x the CPU; level -1 saves at most 10% of it (within the noise) for 27% more bytes.
ZSTD_LEVEL = 1
ZSTD_FILTER = "up"
JPEG_QUALITY = 90  # when a request names none
_PACKAGES = {"zstd": "zstandard", "jpeg": "simplejpeg"}
_local = threading.local()  # per-thread zstd contexts: a context is not safe to share between threads


def codec(encoding: str) -> Any:
    """The module that encodes and decodes ``encoding`` (None for raw), imported now; a missing package raises
    one ``ImportError`` line naming its pip install. Call it before asking for an encoding, to fail early."""
    if encoding == "raw":
        return None
    package = _PACKAGES.get(encoding)
    if package is None:
        raise ValueError(f"unknown encoding {encoding!r}: one of {', '.join(ENCODINGS)}")
    try:
        return importlib.import_module(package)
    except ImportError:
        raise ImportError(f"the {encoding} encoding needs the {package} package: pip install {package}") from None


def _zstd(kind: str) -> Any:
    """This thread's zstd compressor or decompressor."""
    context = getattr(_local, kind, None)
    if context is None:
        zstandard = codec("zstd")
        context = zstandard.ZstdCompressor(level=ZSTD_LEVEL) if kind == "compressor" else zstandard.ZstdDecompressor()
        setattr(_local, kind, context)
    return context


def up_filter(image: np.ndarray) -> np.ndarray:
    """A new (H, W*C) array: the first row of ``image``, then each row minus the one above it, mod 256."""
    rows = image.reshape(image.shape[0], -1)
    filtered = np.empty_like(rows)
    filtered[0] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:])
    return filtered


def undo_up_filter(images: np.ndarray) -> None:
    """Invert :func:`up_filter` in place on a batch (N, H, ...): each row plus the (restored) row above it.
    One numpy call per row of the whole batch; ``np.add.accumulate`` over that axis is 5x slower here."""
    rows = images.reshape(images.shape[0], images.shape[1], -1)
    for row in range(1, rows.shape[1]):
        np.add(rows[:, row], rows[:, row - 1], out=rows[:, row])


def encode_image(image: np.ndarray, encoding: str, quality: int | None = None) -> bytes:
    """One (H, W, C) uint8 image in a batch frame's ``encoding`` (``zstd`` or ``jpeg``)."""
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"encoded batch frames hold (H, W, C) uint8 images, not {image.dtype} {image.shape}")
    if encoding == "zstd":
        return _zstd("compressor").compress(up_filter(image))
    if encoding == "jpeg":
        simplejpeg = codec("jpeg")
        colorspace = {1: "GRAY", 3: "RGB"}.get(image.shape[2])
        if colorspace is None:
            raise ValueError(f"jpeg frames hold 1 or 3 channels, not {image.shape[2]}")
        quality = JPEG_QUALITY if quality is None else quality
        return simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality=quality, colorspace=colorspace)
    raise ValueError(f"unknown encoding {encoding!r}: one of {', '.join(ENCODINGS)}")


def decode_payload(
    header: dict[str, Any], data: np.ndarray, allocate: Callable[[int], np.ndarray] | None = None
) -> np.ndarray:
    """The raw payload of an encoded batch frame: its images decoded, each into its slot of ``allocate(size)``
    (shared memory in a DataLoader worker). What cannot be decoded raises :class:`ProtocolError`."""
    encoding, shape = header.get("encoding"), [int(side) for side in header["shape"]]
    sizes = [int(size) for size in header.get("sizes", [])]
    if encoding not in _DECODERS:
        raise ProtocolError(f"a batch frame in an unknown encoding {encoding!r}: upgrade augserve_client")
    if header.get("dtype") != "uint8" or len(shape) != 4 or len(sizes) != shape[0] or sum(sizes) != len(data):
        raise ProtocolError(f"a malformed {encoding} batch frame: shape {shape}, {len(sizes)} sizes, {len(data)} bytes")
    decode = _DECODERS[encoding]
    payload = (allocate or _empty)(math.prod(shape))
    images = payload.reshape(shape)
    view, offset = memoryview(data), 0
    for index, size in enumerate(sizes):
        decode(header, view[offset : offset + size], images[index])
        offset += size
    if encoding == "zstd":
        undo_up_filter(images)
    return payload


def _decode_zstd(header: dict[str, Any], data: memoryview, slot: np.ndarray) -> None:
    if header.get("filter") != ZSTD_FILTER:
        raise ProtocolError(f"a zstd batch frame with an unknown filter {header.get('filter')!r}")
    zstandard = codec("zstd")
    target = memoryview(slot.reshape(-1))
    filled = 0
    try:
        with _zstd("decompressor").stream_reader(data) as reader:
            while filled < len(target) and (count := reader.readinto(target[filled:])):
                filled += count
            extra = reader.read(1)
    except zstandard.ZstdError as error:
        raise ProtocolError(f"a zstd image could not be decompressed: {error}") from error
    if filled != len(target) or extra:
        raise ProtocolError(f"a zstd image decompressed to {'more' if extra else filled} bytes, not {len(target)}")


def _decode_jpeg(header: dict[str, Any], data: memoryview, slot: np.ndarray) -> None:
    simplejpeg = codec("jpeg")
    colorspace = {1: "GRAY", 3: "RGB"}.get(slot.shape[2])
    try:
        decoded = simplejpeg.decode_jpeg(data, colorspace=colorspace or "RGB", buffer=slot)
    except ValueError as error:
        raise ProtocolError(f"a jpeg image could not be decoded: {error}") from error
    if colorspace is None or decoded.shape != slot.shape:
        raise ProtocolError(f"a jpeg image of {decoded.shape} in a batch of {list(slot.shape)} images")


_DECODERS: dict[str, Callable[[dict[str, Any], memoryview, np.ndarray], None]] = {
    "zstd": _decode_zstd,
    "jpeg": _decode_jpeg,
}


def _empty(size: int) -> np.ndarray:
    return np.empty(size, dtype=np.uint8)
