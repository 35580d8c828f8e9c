"""Decoding uploads (formats, EXIF orientation, the mode rule, limits, broken files) and encoding variants."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import cv2
import numpy as np
import pytest
from augserve import codecs
from augserve.errors import ServiceError
from augserve_client.protocol.errors import ErrorCode
from augserve_client.protocol.wire import npy_parts
from conftest import encode
from PIL import Image, ImageOps

MAX_PIXELS = 1_000_000


def rgb(height: int = 24, width: int = 32) -> np.ndarray:
    """Red, green and blue ramps: a channel swap or a transposition cannot go unnoticed."""
    rows, cols = np.indices((height, width))
    return np.stack([cols * 7 % 256, rows * 11 % 256, (rows + cols) * 5 % 256], axis=2).astype(np.uint8)


def npy(array: np.ndarray) -> bytes:
    return b"".join(bytes(part) for part in npy_parts(array))


def refused(data: bytes, name: str = "upload.bin", max_pixels: int = MAX_PIXELS) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        codecs.decode(data, name, max_pixels)
    assert caught.value.details.get("file") == name
    return caught.value


# --- formats -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("PNG", {}), ("BMP", {}), ("TIFF", {}), ("TIFF", {"compression": "tiff_lzw"}), ("WEBP", {"lossless": True})],
    ids=["png", "bmp", "tiff", "tiff-lzw", "webp-lossless"],
)
def test_lossless_formats_decode_to_exactly_the_pixels(fmt: str, options: dict[str, Any]) -> None:
    image = rgb()
    decoded = codecs.decode(encode(image, fmt, **options), f"x.{fmt.lower()}", MAX_PIXELS)
    assert decoded.dtype == np.uint8 and decoded.flags.c_contiguous
    np.testing.assert_array_equal(decoded, image)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_lossy_formats_decode_close_to_the_pixels(fmt: str, photos: list[np.ndarray]) -> None:
    photo = photos[0][:120, :160]
    decoded = codecs.decode(encode(photo, fmt, quality=95), "photo", MAX_PIXELS)
    assert decoded.shape == photo.shape
    assert np.abs(decoded.astype(int) - photo).mean() < 3


def test_gif_uses_the_first_frame_of_an_animation() -> None:
    frames = [Image.new("RGB", (8, 6), color) for color in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    decoded = codecs.decode(buffer.getvalue(), "anim.gif", MAX_PIXELS)
    assert decoded.shape == (6, 8, 3)
    assert (decoded == [255, 0, 0]).all()


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (rgb(), rgb()),
        (rgb()[..., 0], np.repeat(rgb()[..., :1], 3, axis=2)),
        (rgb()[..., :1], np.repeat(rgb()[..., :1], 3, axis=2)),
        (np.concatenate([rgb(), np.full((24, 32, 1), 7, np.uint8)], axis=2), rgb()),
    ],
    ids=["HxWx3", "HxW", "HxWx1", "HxWx4"],
)
def test_npy_uploads_skip_pillow(array: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_array_equal(codecs.decode(npy(array), "a.npy", MAX_PIXELS), expected)


def test_exif_orientation_is_applied() -> None:
    """Orientation 6: the camera was turned; the stored 10x20 picture is shown turned clockwise, 20x10."""
    image = np.zeros((10, 20, 3), np.uint8)
    image[:3, :3] = 255  # top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(image, "JPEG", exif=exif, quality=95)
    decoded = codecs.decode(data, "turned.jpg", MAX_PIXELS)
    assert decoded.shape == (20, 10, 3)
    assert decoded[1, 8].min() > 200 and decoded[1, 1].max() < 50  # now top-right
    assert codecs.image_size(data, "turned.jpg", MAX_PIXELS) == (20, 10)


def pillow_pixels(data: bytes) -> np.ndarray:
    """What Pillow alone makes of a JPEG: the decoding rule's reference (exif_transpose, then RGB)."""
    with Image.open(io.BytesIO(data)) as image:
        turned = ImageOps.exif_transpose(image)
        return np.asarray(turned.convert("RGB"))


@pytest.mark.parametrize("subsampling", [0, 1, 2], ids=["4:4:4", "4:2:2", "4:2:0"])
def test_jpegs_decode_to_the_pixels_pillow_gives(subsampling: int, photos: list[np.ndarray]) -> None:
    """libjpeg-turbo through simplejpeg, outside the GIL, and Pillow agree to the byte: same IDCT, same upsampling."""
    photo = photos[0][:131, :197]  # odd sides: partial MCUs at the edges
    data = encode(photo, "JPEG", quality=90, subsampling=subsampling)
    np.testing.assert_array_equal(codecs.decode(data, "p.jpg", MAX_PIXELS), pillow_pixels(data))


def test_greyscale_jpegs_decode_to_the_pixels_pillow_gives(photos: list[np.ndarray]) -> None:
    data = encode(photos[1][:64, :80, 1], "JPEG", quality=90)
    decoded = codecs.decode(data, "grey.jpg", MAX_PIXELS)
    np.testing.assert_array_equal(decoded, pillow_pixels(data))
    assert (decoded[..., 0] == decoded[..., 2]).all()


@pytest.mark.parametrize("turn", range(1, 9))
def test_every_exif_orientation_matches_pillows_transpose(turn: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = turn
    data = encode(rgb(16, 40), "JPEG", exif=exif, quality=95)
    decoded = codecs.decode(data, "turned.jpg", MAX_PIXELS)
    assert decoded.flags.c_contiguous
    np.testing.assert_array_equal(decoded, pillow_pixels(data))


@pytest.mark.parametrize("turn", [1, 6])
def test_a_jpeg_decodes_dct_scaled_to_the_least_size_covering_min_size(turn: int, photos: list[np.ndarray]) -> None:
    """``min_size`` is in shown (oriented) pixels; libjpeg-turbo scales by eighths, each side rounded up."""
    exif = Image.Exif()
    exif[0x0112] = turn
    data = encode(photos[0][:400, :320], "JPEG", exif=exif, quality=90)
    full = codecs.decode(data, "p.jpg", MAX_PIXELS)
    assert full.shape[:2] == ((400, 320) if turn == 1 else (320, 400))
    small = codecs.decode(data, "p.jpg", MAX_PIXELS, min_size=(full.shape[0] // 4, full.shape[1] // 4))
    assert small.shape[:2] == (full.shape[0] // 4, full.shape[1] // 4)  # 2/8: both sides divide evenly
    reduced = cv2.resize(full, small.shape[1::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - reduced).mean() < 3  # the same picture, not a crop or a turn of it
    np.testing.assert_array_equal(codecs.decode(data, "p.jpg", MAX_PIXELS, min_size=full.shape[:2]), full)


# --- the mode rule -----------------------------------------------------------------------------------------


def pil(mode: str, array: np.ndarray, **extra: Any) -> Image.Image:
    image = Image.fromarray(array, mode=mode) if mode not in ("P", "CMYK") else Image.fromarray(array)
    for key, value in extra.items():
        setattr(image, key, value)
    return image


def test_greyscale_l_is_repeated_into_three_channels() -> None:
    grey = rgb()[..., 1]
    decoded = codecs.decode(encode(grey, "PNG"), "l.png", MAX_PIXELS)
    np.testing.assert_array_equal(decoded, np.repeat(grey[..., None], 3, axis=2))


def test_alpha_is_dropped_not_composited() -> None:
    rgba = np.concatenate([rgb(), np.zeros((24, 32, 1), np.uint8)], axis=2)  # fully transparent
    np.testing.assert_array_equal(codecs.decode(encode(rgba, "PNG"), "rgba.png", MAX_PIXELS), rgb())
    la = np.stack([rgb()[..., 0], np.zeros((24, 32), np.uint8)], axis=2)
    decoded = codecs.decode(encode(Image.fromarray(la, mode="LA"), "PNG"), "la.png", MAX_PIXELS)
    np.testing.assert_array_equal(decoded, np.repeat(rgb()[..., :1], 3, axis=2))


def test_palette_images_are_expanded() -> None:
    palette_image = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    palette_image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    decoded = codecs.decode(encode(palette_image, "PNG"), "p.png", MAX_PIXELS)
    np.testing.assert_array_equal(decoded, [[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [0, 255, 0]]])


def test_one_bit_images_become_black_and_white() -> None:
    bits = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")
    decoded = codecs.decode(encode(bits, "PNG"), "1.png", MAX_PIXELS)
    np.testing.assert_array_equal(decoded[..., 0], [[0, 255], [255, 0]])


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_is_converted_by_pillow(fmt: str) -> None:
    cmyk = Image.new("CMYK", (4, 3), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    decoded = codecs.decode(encode(cmyk, fmt, **({"quality": 100} if fmt == "JPEG" else {})), "c", MAX_PIXELS)
    assert decoded.shape == (3, 4, 3)
    assert decoded[..., 0].min() > 240 and decoded[..., 1:].max() < 15


def test_16_bit_greyscale_keeps_its_high_byte() -> None:
    """0x1234 becomes 0x12, not 255 (which is what Pillow's own conversion would give)."""
    deep = np.full((3, 5), 0x1234, np.uint16)
    deep[0, 0] = 0xFFFF
    data = encode(Image.fromarray(deep), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    decoded = codecs.decode(data, "deep.png", MAX_PIXELS)
    assert decoded.shape == (3, 5, 3)
    assert (decoded[1:] == 0x12).all() and (decoded[0, 0] == 0xFF).all()


def test_32_bit_integer_images_are_clipped_to_16_bits_then_keep_the_high_byte() -> None:
    wide = np.array([[0x1234, 70_000, -5]], np.int32)
    data = encode(Image.fromarray(wide, mode="I"), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I"
    np.testing.assert_array_equal(codecs.decode(data, "i.tif", MAX_PIXELS)[..., 0], [[0x12, 0xFF, 0]])


def test_32_bit_float_images_are_refused() -> None:
    data = encode(Image.fromarray(np.zeros((3, 3), np.float32), mode="F"), "TIFF")
    error = refused(data, "float.tif")
    assert error.code is ErrorCode.UNSUPPORTED_MODE and error.code.status == 415


@pytest.mark.parametrize(
    "array",
    [np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros((2, 4, 4, 3), np.uint8)],
    ids=["float32", "2 channels", "4 dimensions"],
)
def test_npy_uploads_must_be_uint8_images(array: np.ndarray) -> None:
    assert refused(npy(array), "bad.npy").code is ErrorCode.UNSUPPORTED_MODE


# --- limits and broken files -------------------------------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a size its (absent) pixel data never delivers: decoding it would fail, so an
    image_too_large error proves the limit is checked from the header, before decoding."""
    chunks = [
        (b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)),
        (b"IDAT", zlib.compress(b"")),
        (b"IEND", b""),
    ]
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data)) for kind, data in chunks
    )


def test_the_pixel_limit_is_checked_before_decoding() -> None:
    error = refused(png_claiming(100_000, 100_000), "bomb.png")
    assert error.code is ErrorCode.IMAGE_TOO_LARGE and error.code.status == 413
    assert error.details["limit"] == "max_pixels" and error.details["limit_value"] == MAX_PIXELS
    assert "100000x100000" in error.message
    assert refused(png_claiming(10, 10), "small.png").code is ErrorCode.CORRUPT_IMAGE  # under it, it decodes


def test_the_pixel_limit_applies_to_real_images_and_npy() -> None:
    image = np.zeros((40, 50, 3), np.uint8)
    assert codecs.decode(encode(image, "PNG"), "fits.png", 2000).shape == (40, 50, 3)
    for data, name in ((encode(image, "PNG"), "big.png"), (npy(image), "big.npy")):
        assert refused(data, name, max_pixels=1999).code is ErrorCode.IMAGE_TOO_LARGE


def test_an_empty_upload() -> None:
    error = refused(b"", "empty.png")
    assert error.code is ErrorCode.EMPTY_FILE and error.code.status == 422


def test_an_npy_without_pixels_is_empty() -> None:
    assert refused(npy(np.zeros((0, 5, 3), np.uint8)), "none.npy").code is ErrorCode.EMPTY_FILE


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_truncated_image_is_corrupt(fmt: str, photos: list[np.ndarray]) -> None:
    data = encode(photos[1][:100, :100], fmt)
    error = refused(data[: len(data) // 2], "cut")
    assert error.code is ErrorCode.CORRUPT_IMAGE and error.code.status == 422


def test_a_truncated_npy_is_corrupt() -> None:
    assert refused(npy(rgb())[:-10], "cut.npy").code is ErrorCode.CORRUPT_IMAGE


@pytest.mark.parametrize("data", [bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), b"hello"])
def test_bytes_that_are_no_image_at_all(data: bytes) -> None:
    error = refused(data, "notes.txt")
    assert error.code is ErrorCode.NOT_AN_IMAGE and error.code.status == 422


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "PCX", "TGA", "QOI"])
def test_formats_pillow_reads_but_we_do_not_accept(fmt: str) -> None:
    error = refused(encode(rgb(16, 16), fmt), f"image.{fmt.lower()}")
    assert error.code is ErrorCode.UNSUPPORTED_FORMAT and error.code.status == 415
    assert fmt in error.message


# --- encoding ----------------------------------------------------------------------------------------------


def encoded(image: np.ndarray, fmt: str, quality: int = 90) -> bytes:
    parts = codecs.encode(image, fmt, quality)
    assert isinstance(parts, list)
    return b"".join(bytes(part) for part in parts)


@pytest.mark.parametrize("fmt", ["npy", "png"])
def test_lossless_encodings_round_trip_exactly(fmt: str) -> None:
    image = rgb()
    data = encoded(image, fmt)
    np.testing.assert_array_equal(codecs.decode(data, "v", MAX_PIXELS), image)
    if fmt == "png":
        with Image.open(io.BytesIO(data)) as opened:  # RGB, not OpenCV's BGR
            assert opened.format == "PNG" and opened.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(opened), image)
    else:
        np.testing.assert_array_equal(np.load(io.BytesIO(data)), image)


@pytest.mark.parametrize(("fmt", "pil_format"), [("jpeg", "JPEG"), ("webp", "WEBP")])
def test_lossy_encodings_round_trip_closely_in_rgb_order(fmt: str, pil_format: str, photos: list[np.ndarray]) -> None:
    photo = np.ascontiguousarray(photos[1][100:164, 200:264])
    data = encoded(photo, fmt, quality=95)
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.format == pil_format
        decoded = np.asarray(opened.convert("RGB"))
    assert np.abs(decoded.astype(int) - photo).mean() < 4
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    with Image.open(io.BytesIO(encoded(red, fmt))) as opened:
        pixel = np.asarray(opened.convert("RGB"))[8, 8]
    assert pixel[0] > 240 and pixel[2] < 15


def test_quality_changes_the_lossy_encodings() -> None:
    image = rgb(64, 64)
    for fmt in ("jpeg", "webp"):
        assert len(encoded(image, fmt, quality=10)) < len(encoded(image, fmt, quality=95))


def test_npy_encoding_is_the_pixels_themselves() -> None:
    image = rgb()
    parts = codecs.encode(image, "npy", 90)
    assert bytes(parts[-1]) == image.tobytes()
