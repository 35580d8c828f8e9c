"""The files of the hostile-input table (tests/test_hostile_inputs.py), each built in a few kilobytes.

Bombs decode to far more pixels than the table's server allows (4 Mpx) yet stay tiny on the wire: real
compressed zeros where the format compresses well, a patched header where it does not. Files for the decoding
rule come with the pixels the rule promises (``augserve.codecs``), computed from the source array, not by
decoding the file again.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from conftest import encode
from PIL import Image


def ramp(height: int = 24, width: int = 32) -> np.ndarray:
    """Red, green and blue ramps: a channel swap or a transposition cannot go unnoticed."""
    rows, cols = np.indices((height, width))
    return np.stack([cols * 7 % 256, rows * 11 % 256, (rows + cols) * 5 % 256], axis=2).astype(np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_zeros(width: int, height: int, rows: int | None = None) -> bytes:
    """A greyscale PNG of zeros, really compressed; ``rows`` of them only (a truncated image) when given."""
    packer = zlib.compressobj(9)
    line = b"\0" * (width + 1)
    data = b"".join(packer.compress(line) for _ in range(height if rows is None else rows)) + packer.flush()
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def png_rgb(pixels: np.ndarray, interlaced: bool = False, keep: float = 1.0) -> bytes:
    """An RGB PNG of ``pixels`` written here (Pillow writes no interlaced PNG), Adam7 when ``interlaced``; when
    ``keep`` < 1, a whole zlib stream of only that share of the image data: a truncated image, well-formed."""
    height, width, _ = pixels.shape
    passes = ADAM7 if interlaced else ((0, 0, 1, 1),)
    rows = [b"\0" + row.tobytes() for x0, y0, dx, dy in passes if width > x0 for row in pixels[y0::dy, x0::dx]]
    data = b"".join(rows)
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, int(interlaced)))
    idat = _chunk(b"IDAT", zlib.compress(data[: int(len(data) * keep)], 9))
    return b"\x89PNG\r\n\x1a\n" + header + idat + _chunk(b"IEND", b"")


def png_header_only(width: int, height: int) -> bytes:
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + _chunk(b"IEND", b"")


def gif_screen(width: int, height: int) -> bytes:
    """A one-pixel GIF whose logical screen (what Pillow takes for its size) says ``width`` x ``height``."""
    data = bytearray(encode(Image.new("P", (1, 1)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def tiff_zeros(side: int) -> bytes:
    """A bilevel TIFF of zeros in CCITT group 4: a few hundred bytes for ``side``² pixels."""
    return encode(Image.new("1", (side, side)), "TIFF", compression="group4")


def webp_canvas(side: int) -> bytes:
    """A lossless one-pixel WebP whose VP8L header claims ``side`` x ``side`` (at most 16384)."""
    data = bytearray(encode(Image.new("RGB", (1, 1)), "WEBP", lossless=True))
    at = data.index(b"VP8L") + 9  # chunk tag, size, signature byte: then 14 bits width-1, 14 bits height-1
    bits = struct.unpack("<I", data[at : at + 4])[0]
    bits = (bits & ~0x0FFFFFFF) | (side - 1) | ((side - 1) << 14)
    data[at : at + 4] = struct.pack("<I", bits)
    return bytes(data)


def jpeg_sof(width: int, height: int) -> bytes:
    """An 8x8 JPEG whose frame header claims ``width`` x ``height``."""
    data = bytearray(encode(ramp(8, 8), "JPEG"))
    at = data.index(b"\xff\xc0") + 5
    data[at : at + 4] = struct.pack(">HH", height, width)
    return bytes(data)


def npy_header(shape: tuple[int, ...]) -> bytes:
    header = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - len(header) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


BOMBS: dict[str, bytes] = {
    "zeros.png": png_zeros(8000, 8000),
    "screen.gif": gif_screen(65535, 65535),
    "zeros.tif": tiff_zeros(8000),
    "canvas.webp": webp_canvas(16384),
    "header-only.png": png_header_only(1_000_000, 1_000_000),
    "frame-header.jpg": jpeg_sof(65500, 65500),
    "shape-only.npy": npy_header((100_000, 100_000, 3)),
}


def _zip_text_png() -> bytes:
    """A 1x1 PNG carrying a zTXt chunk that inflates to 64 MB: a bomb in metadata, not in pixels."""
    plain = encode(Image.new("RGB", (1, 1)), "PNG")
    text = _chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"\0" * (64 << 20), 9))
    return plain[:33] + text + plain[33:]


# name: (bytes, status, code)
FILES: dict[str, tuple[bytes, int, str]] = {
    "truncated.png": (encode(ramp(), "PNG")[:-40], 422, "corrupt_image"),
    "truncated.jpg": (encode(ramp(64, 64), "JPEG")[:300], 422, "corrupt_image"),
    "truncated.gif": (encode(Image.fromarray(ramp()).convert("P"), "GIF")[:500], 422, "corrupt_image"),
    "truncated.webp": (encode(ramp(), "WEBP")[:40], 422, "corrupt_image"),
    "text.png": (b"just some text, not an image\n", 422, "not_an_image"),
    "page.jpg": (b"<!doctype html><title>x</title>", 422, "not_an_image"),
    "drawing.png": (b'<svg xmlns="http://www.w3.org/2000/svg" width="9000" height="9000"/>', 422, "not_an_image"),
    "empty.png": (b"", 422, "empty_file"),
    "icon.ico": (encode(Image.fromarray(ramp(16, 16)), "ICO"), 415, "unsupported_format"),
    "float.tif": (encode(Image.fromarray(np.zeros((4, 4), np.float32), "F"), "TIFF"), 415, "unsupported_mode"),
    "int16.npy": (npy_header((4, 4)).replace(b"|u1", b"<i2") + b"\0" * 32, 415, "unsupported_mode"),
    "short.npy": (npy_header((40, 40, 3)) + b"\0" * 100, 422, "corrupt_image"),
    "text-bomb.png": (_zip_text_png(), 422, "corrupt_image"),
}


def _palette() -> tuple[Image.Image, np.ndarray]:
    indices = (np.arange(24 * 32).reshape(24, 32) % 4).astype(np.uint8)
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 99, 199]], np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette(colours.flatten().tolist())
    image.info["transparency"] = 0
    return image, colours[indices]


def _sixteen_bit() -> tuple[Image.Image, np.ndarray]:
    values = (np.arange(24 * 32).reshape(24, 32) * 85).astype(np.uint16)
    high = (values >> 8).astype(np.uint8)
    return Image.fromarray(values), np.repeat(high[..., None], 3, axis=2)


def _cmyk() -> tuple[Image.Image, np.ndarray]:
    """The rule's naive CMYK is Pillow's own conversion, applied here to the source image, not to the file."""
    image = Image.fromarray(np.concatenate([ramp(), ramp()[..., :1] // 3], axis=2), "CMYK")
    return image, np.asarray(image.convert("RGB"))


def _grey(mode: str, array: np.ndarray) -> np.ndarray:
    grey = array if mode != "1" else array.astype(np.uint8) * 255
    return np.repeat(grey[..., None], 3, axis=2)


def _pixel_cases() -> dict[str, tuple[bytes, np.ndarray]]:
    rgba = np.concatenate([ramp(), np.full((24, 32, 1), 7, np.uint8)], axis=2)
    grey = ramp()[..., 0]
    bits = (np.indices((24, 32)).sum(axis=0) % 2).astype(bool)
    palette, palette_rgb = _palette()
    sixteen, sixteen_rgb = _sixteen_bit()
    cmyk, cmyk_rgb = _cmyk()
    la = Image.fromarray(np.stack([grey, grey // 2], axis=2), "LA")
    dark = ramp().copy()
    dark[-1] = 0  # a whole PNG whose last row is black, as a truncated one's would be
    return {
        "interlaced.png": (png_rgb(ramp(), interlaced=True), ramp()),
        "black-last-row.png": (encode(dark, "PNG"), dark),
        "rgba.png": (encode(rgba, "PNG"), ramp()),
        "la.png": (encode(la, "PNG"), _grey("L", grey)),
        "palette-with-transparency.png": (encode(palette, "PNG"), palette_rgb),
        "palette.gif": (encode(palette, "GIF"), palette_rgb),
        "sixteen-bit.png": (encode(sixteen, "PNG"), sixteen_rgb),
        "sixteen-bit.tif": (encode(sixteen, "TIFF"), sixteen_rgb),
        "cmyk.tif": (encode(cmyk, "TIFF"), cmyk_rgb),
        "bilevel.png": (encode(Image.fromarray(bits), "PNG"), _grey("1", bits)),
        "grey.webp": (encode(Image.fromarray(grey), "WEBP", lossless=True), _grey("L", grey)),
        "png-named.jpg": (encode(ramp(), "PNG"), ramp()),
        "rgba.npy": (npy_header((24, 32, 4)) + rgba.tobytes(), ramp()),
        "grey.npy": (npy_header((24, 32)) + grey.tobytes(), _grey("L", grey)),
    }


PIXELS: dict[str, tuple[bytes, np.ndarray]] = _pixel_cases()
