"""Decoding uploads into RGB arrays, and encoding variants for the wire.

Decoding rule (one rule for every input, like torchvision's ``convert("RGB")`` so models see what they would
see locally): EXIF orientation is applied; RGB stays; L, 1, P, RGBA, LA, PA and CMYK are converted to RGB by
Pillow (alpha is dropped, palettes expanded, CMYK converted naively); 16-bit greyscale (I;16 and I) is scaled
to 8 bits by keeping the high byte (Pillow's own conversion would clip everything above 255 to white); 32-bit
float (F) has no agreed 8-bit mapping and is refused. GIF and other animations use their first frame. ``.npy``
uploads (uint8, HxW or HxWx1/3/4) skip Pillow entirely.

A truncated file is refused (``corrupt_image``), never decoded in part: Pillow refuses one whose bytes stop short
(``LOAD_TRUNCATED_IMAGES`` stays False), but takes a PNG whose compressed stream is whole and holds fewer rows
than its header says, and leaves the missing rows black; libpng refuses it, and so does :func:`_whole_png`.

Encoding sits on the hot path, so each format uses the fastest codec here: raw ``npy`` (no work), JPEG through
libjpeg-turbo (simplejpeg), PNG and WebP through OpenCV (Pillow's PNG encoder is several times slower).
"""

from __future__ import annotations

import io
import math
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np
import simplejpeg
from augserve_client.protocol.errors import ErrorCode
from augserve_client.protocol.wire import NPY_MAGIC, Buffer, npy_parts, npy_shape, read_npy
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from . import jpeg, metrics
from .errors import ServiceError, limit_exceeded

SUPPORTED_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO"}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp", "npy": "npy"}

# Our own pixel limit runs first; Pillow's guard stays as a backstop but must not warn into logs.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False  # Pillow's default, stated: a file that stops short is an error
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type: grey, RGB, palette, grey+alpha, RGBA
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def decode(
    data: bytes, name: str, max_pixels: int, min_size: tuple[int, int] | None = None, fast: bool = False
) -> np.ndarray:
    """Decode an upload to a contiguous HxWx3 uint8 RGB array, or raise a ServiceError naming ``name``.

    Plain JPEGs go through libjpeg-turbo outside the GIL (:mod:`.jpeg`), to the same pixels Pillow gives. The
    ``fast`` decode mode (:mod:`.scaled_decode`) may ask a JPEG for less: ``min_size`` (height, width) decodes
    it DCT-scaled, down to the least scale covering that size, and ``fast`` uses libjpeg-turbo's fast IDCT and
    upsampling. Other formats ignore both."""
    _not_empty(data, name)
    if data.startswith(NPY_MAGIC):
        return _decode_npy(data, name, max_pixels)
    with metrics.DECODE_SECONDS.time(), _opened(data, name, max_pixels, "decoded") as image:
        if jpeg.takes(image):
            pixels = jpeg.decode(data, jpeg.orientation(image), min_size, fast)
            if pixels is not None:
                return pixels
        image.load()
        _whole(image, data, name)
        ImageOps.exif_transpose(image, in_place=True)  # not in place, it copies every image, rotated or not
        return _to_rgb(image, name)


def image_size(data: bytes, name: str, max_pixels: int) -> tuple[int, int]:
    """(height, width) from the header alone; cheap enough to run on every file of a dataset."""
    _not_empty(data, name)
    if data.startswith(NPY_MAGIC):
        return _npy_checked_shape(data, name, max_pixels)[:2]
    with _opened(data, name, max_pixels, "read") as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1)
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def decoded_bytes(data: bytes, name: str, max_pixels: int) -> int:
    """The bytes of the RGB array :func:`decode` would return, from the header alone."""
    height, width = image_size(data, name, max_pixels)
    return height * width * 3


def _not_empty(data: bytes, name: str) -> None:
    if not data:
        raise ServiceError(ErrorCode.EMPTY_FILE, f"{name} is empty (0 bytes)", file=name)


@contextmanager
def _opened(data: bytes, name: str, max_pixels: int, doing: str) -> Iterator[Image.Image]:
    """Pillow's lazy view of an upload, header checked; whatever fails inside becomes a code naming ``name``."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_header(image, name, max_pixels)
            yield image
    except UnidentifiedImageError:
        raise ServiceError(ErrorCode.NOT_AN_IMAGE, f"{name} is not an image Pillow can read", file=name) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ServiceError(ErrorCode.CORRUPT_IMAGE, f"{name} could not be {doing}: {error}", file=name) from None


def _check_header(image: Image.Image, name: str, max_pixels: int) -> None:
    if image.format not in SUPPORTED_FORMATS:
        raise ServiceError(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"{name} is {image.format}; supported: JPEG, PNG, WebP, BMP, TIFF, GIF and .npy",
            file=name,
        )
    width, height = image.size
    if width * height > max_pixels:
        raise limit_exceeded(
            ErrorCode.IMAGE_TOO_LARGE, "max_pixels", max_pixels, f"{name} has {width}x{height} pixels", file=name
        )


def _whole(image: Image.Image, data: bytes, name: str) -> None:
    """Refuse a loaded PNG whose pixel data ends before its last row. Rows Pillow never reached stay zero, so a
    last row with anything in it (most images) proves a whole non-interlaced PNG at the cost of one row; the
    others (a black last row, an interlaced file) are checked by inflating their data again."""
    if image.format != "PNG":
        return
    width, height = image.size
    if not image.info.get("interlace") and np.asarray(image.crop((0, height - 1, width, height))).any():
        return
    if not _whole_png(data):
        message = f"{name} could not be decoded: its pixel data ends before its last row (image file is truncated)"
        raise ServiceError(ErrorCode.CORRUPT_IMAGE, message, file=name)


def _whole_png(data: bytes) -> bool:
    """Whether a PNG's image data (its IDAT chunks) inflates to every row its header promises."""
    header, stream = _png_parts(data)
    if header is None:
        return False
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    bits = depth * PNG_CHANNELS.get(colour, 4)
    passes = ADAM7 if interlace else ((0, 0, 1, 1),)
    expected = 0
    for x0, y0, dx, dy in passes:
        columns, rows = math.ceil(max(width - x0, 0) / dx), math.ceil(max(height - y0, 0) / dy)
        expected += rows * (1 + math.ceil(columns * bits / 8)) if columns else 0
    return _inflates_to(stream, expected)


def _png_parts(data: bytes) -> tuple[bytes | None, bytes]:
    """A PNG's IHDR payload and its IDAT payloads joined, read from the chunk headers alone."""
    header, idat, at = None, [], 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        payload = data[at + 8 : at + 8 + length]
        if kind == b"IHDR" and len(payload) == 13:
            header = payload
        elif kind == b"IDAT":
            idat.append(payload)
        elif kind == b"IEND":
            break
        at += 12 + length
    return header, b"".join(idat)


def _inflates_to(stream: bytes, expected: int) -> bool:
    """Whether a zlib ``stream`` inflates to at least ``expected`` bytes, holding 1 MB of them at a time."""
    inflater, total, pending = zlib.decompressobj(), 0, stream
    try:
        while pending and total < expected:
            total += len(inflater.decompress(pending, 1 << 20))
            pending = inflater.unconsumed_tail
    except zlib.error:
        return False
    return total >= expected


def _to_rgb(image: Image.Image, name: str) -> np.ndarray:
    if image.mode == "F":
        raise ServiceError(ErrorCode.UNSUPPORTED_MODE, f"{name} is 32-bit float (mode F)", file=name)
    if image.mode.startswith("I"):
        high_byte = (np.asarray(image).clip(0, 65535) >> 8).astype(np.uint8)  # clip first: I is signed
        return np.ascontiguousarray(np.repeat(high_byte[..., None], 3, axis=2))
    if image.mode != "RGB":
        with warnings.catch_warnings():  # Pillow warns about palette transparency it is about to drop
            warnings.simplefilter("ignore")
            image = image.convert("RGB")
    return np.asarray(image)  # read-only, over the one copy Pillow hands out: no second one


def _npy_checked_shape(data: bytes, name: str, max_pixels: int) -> tuple[int, ...]:
    try:
        shape, dtype, _ = npy_shape(data)
    except ValueError as error:
        raise ServiceError(ErrorCode.CORRUPT_IMAGE, f"{name}: {error}", file=name) from None
    if dtype != np.uint8 or len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3, 4)):
        raise ServiceError(
            ErrorCode.UNSUPPORTED_MODE, f"{name} is {dtype} {shape}; .npy uploads must be uint8 HxW or HxWxC", file=name
        )
    if shape[0] == 0 or shape[1] == 0:
        raise ServiceError(ErrorCode.EMPTY_FILE, f"{name} holds no pixels ({shape[1]}x{shape[0]})", file=name)
    if shape[0] * shape[1] > max_pixels:
        raise limit_exceeded(
            ErrorCode.IMAGE_TOO_LARGE, "max_pixels", max_pixels, f"{name} has {shape[1]}x{shape[0]} pixels", file=name
        )
    return shape


def _decode_npy(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    shape = _npy_checked_shape(data, name, max_pixels)
    try:
        array = read_npy(data)
    except ValueError as error:
        raise ServiceError(ErrorCode.CORRUPT_IMAGE, f"{name}: {error}", file=name) from None
    if len(shape) == 2:
        array = array[..., None]
    channels = array.shape[2]
    if channels == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def encode(image: np.ndarray, fmt: str, quality: int) -> list[Buffer]:
    """Encode an HxWx3 uint8 RGB variant, or an HxW mask (png or npy); returns buffers so raw data is never
    copied here."""
    if fmt == "npy":
        return npy_parts(image)
    if fmt == "jpeg":
        return [simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality=quality, colorspace="RGB")]
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1] if fmt == "png" else [cv2.IMWRITE_WEBP_QUALITY, quality]
    ok, encoded = cv2.imencode(f".{fmt}", bgr, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {fmt}")
    return [encoded.data]


def decode_mask(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """A mask upload as a contiguous HxW uint8 array of class ids, or a ServiceError naming ``name``.

    Greyscale (L) is taken as it is; a palette image (P, as Pascal VOC stores its masks) gives its indices, not
    its colours; a 1-bit image gives 0 and 255; 16-bit greyscale must hold values up to 255. Colour is refused:
    what class a colour means is the dataset's convention, not ours. ``.npy`` masks are uint8 HxW or HxWx1."""
    _not_empty(data, name)
    if data.startswith(NPY_MAGIC):
        shape = _npy_checked_shape(data, name, max_pixels)
        if len(shape) == 3 and shape[2] != 1:
            raise ServiceError(ErrorCode.UNSUPPORTED_MODE, f"{name} is {shape}; a .npy mask is HxW or HxWx1", file=name)
        return np.ascontiguousarray(read_npy(data).reshape(shape[:2]))
    with _opened(data, name, max_pixels, "decoded") as image:
        image.load()
        _whole(image, data, name)
        image = ImageOps.exif_transpose(image)
        return _mask_pixels(image, name)


def _mask_pixels(image: Image.Image, name: str) -> np.ndarray:
    if image.mode in ("L", "P"):
        return np.ascontiguousarray(np.asarray(image))
    if image.mode == "1":
        return np.asarray(image, dtype=np.uint8) * 255
    if image.mode.startswith("I"):
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 255:
            message = f"{name} holds class ids from {values.min()} to {values.max()}; masks carry 0..255"
            raise ServiceError(ErrorCode.UNSUPPORTED_MODE, message, file=name)
        return values.astype(np.uint8)
    message = f"{name} is {image.mode}; a mask must be single-channel (greyscale L, palette P, or 1-bit)"
    raise ServiceError(ErrorCode.UNSUPPORTED_MODE, message, file=name)
