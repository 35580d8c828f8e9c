"""Encoded batch frames (zstd, jpeg): the writers and readers of protocol/wire.py and protocol/encodings.py,
tested against each other."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest
from augserve_client.protocol.encodings import decode_payload, encode_image, undo_up_filter, up_filter
from augserve_client.protocol.errors import ProtocolError
from augserve_client.protocol.wire import (
    batch_array,
    batch_frame,
    encoded_batch_frame,
    frame,
    read_frames,
)
from test_wire import BATCHES, Trickle, frames_stream


@pytest.fixture(scope="module")
def photo_batch(photos: list[np.ndarray]) -> np.ndarray:
    """Four 48x64 windows of the real photos: what encodings are for (noise would not compress)."""
    return np.stack([photos[index % 2][40 * index : 40 * index + 48, 100 : 100 + 64] for index in range(4)])


def encoded_stream(images: np.ndarray, encoding: str, quality: int | None = None) -> bytes:
    fields = {"batch": 0, "labels": [7] * len(images)}
    buffers = [
        *batch_frame(images, encoding=encoding, quality=quality, **fields),
        *frame({"kind": "end", "batches": 1}),
    ]
    return b"".join(bytes(buffer) for buffer in buffers)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / error))


@pytest.mark.parametrize("split", ["whole", "byte by byte", "random chunks"])
def test_zstd_frames_give_back_the_raw_bytes_however_bytes_arrive(photo_batch: np.ndarray, split: str) -> None:
    rng = random.Random(3)
    sizes = {
        "whole": iter(lambda: 1 << 30, None),
        "byte by byte": iter(lambda: 1, None),
        "random chunks": iter(lambda: rng.randint(1, 700), None),
    }[split]
    data = encoded_stream(photo_batch, "zstd")
    body = Trickle(data, sizes)
    (header, payload), (end, _) = read_frames(body)
    assert body.left == 0 and end["kind"] == "end"
    assert header["encoding"] == "zstd" and header["filter"] == "up" and header["labels"] == [7] * 4
    assert header["shape"] == list(photo_batch.shape) and header["nbytes"] == sum(header["sizes"])
    assert header["nbytes"] < 0.8 * photo_batch.nbytes  # it did compress
    assert batch_array(header, payload).tobytes() == photo_batch.tobytes()


def encoded_stream_raw(images: np.ndarray) -> bytes:
    buffers = [
        *batch_frame(images, encoding="raw", index=0, labels=[0] * len(images)),
        *frame({"kind": "end", "batches": 1}),
    ]
    return b"".join(bytes(buffer) for buffer in buffers)


def test_a_raw_frame_has_no_encoding_fields() -> None:
    """raw is exactly the frame there was before encodings: no key was added to its header."""
    (header, _), _ = read_frames(io.BytesIO(frames_stream(BATCHES[:1])))
    assert set(header) == {"kind", "shape", "dtype", "index", "labels", "nbytes"}
    assert frames_stream(BATCHES[:1]) == encoded_stream_raw(BATCHES[0])


@pytest.mark.parametrize("quality", [90, 75])
def test_jpeg_frames_are_close_to_the_raw_pixels(photo_batch: np.ndarray, quality: int) -> None:
    data = encoded_stream(photo_batch, "jpeg", quality)
    (header, payload), _ = read_frames(io.BytesIO(data))
    assert header["encoding"] == "jpeg" and header["quality"] == quality and len(header["sizes"]) == 4
    images = batch_array(header, payload)
    assert images.shape == photo_batch.shape and header["nbytes"] < photo_batch.nbytes / 3
    assert psnr(images, photo_batch) > {90: 36, 75: 32}[quality]
    assert encoded_stream(photo_batch, "jpeg", quality) == data  # the same pixels give the same bytes


def test_encoded_payloads_are_decoded_into_the_buffers_the_caller_allocates(photo_batch: np.ndarray) -> None:
    for encoding in ("zstd", "jpeg"):
        given: list[np.ndarray] = []

        def allocate(size: int, given: list[np.ndarray] = given) -> np.ndarray:
            given.append(np.full(size, 7, dtype=np.uint8))
            return given[-1]

        (header, payload), (_, end_payload) = read_frames(io.BytesIO(encoded_stream(photo_batch, encoding)), allocate)
        assert len(given) == 2 and payload is given[0] and end_payload is given[1]
        assert given[0].size == photo_batch.nbytes  # the raw size, not the bytes that travelled
        assert np.shares_memory(batch_array(header, payload), given[0])


def test_images_are_encoded_one_by_one_so_a_split_batch_has_the_same_bytes(photo_batch: np.ndarray) -> None:
    """The server encodes each variant in the pool job that made it: the first batch of a stream is split into
    parts, and its frame must not depend on how."""
    for encoding in ("zstd", "jpeg"):
        whole = b"".join(bytes(part) for part in batch_frame(photo_batch, encoding=encoding, batch=0))
        each = [encode_image(image, encoding) for image in photo_batch]
        assert (
            b"".join(bytes(part) for part in encoded_batch_frame(photo_batch.shape, each, encoding, batch=0)) == whole
        )


def test_the_up_filter_wraps_around_and_undoes_in_place() -> None:
    images = np.random.default_rng(0).integers(0, 256, (3, 6, 5, 3), dtype=np.uint8)
    images[0, 1] = 0  # 0 - 255 wraps to 1
    images[0, 0] = 255
    filtered = np.stack([up_filter(image) for image in images]).reshape(images.shape)
    assert filtered[0, 1, 0, 0] == 1 and filtered.dtype == np.uint8
    undo_up_filter(filtered)
    np.testing.assert_array_equal(filtered, images)


def test_grey_images_travel_as_grey_jpegs() -> None:
    grey = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (2, 16, 1))[..., None]  # (2, 16, 32, 1) smooth ramps
    (header, payload), _ = read_frames(io.BytesIO(encoded_stream(grey, "jpeg", 95)))
    assert np.abs(batch_array(header, payload).astype(int) - grey).max() <= 4


def corrupt(data: bytes, header_update: dict | None = None, payload: bytes | None = None) -> bytes:
    """A one-frame stream with its batch header and/or payload replaced."""
    length = int.from_bytes(data[4:8], "little")
    header = json.loads(data[8 : 8 + length])
    old_payload = data[8 + length : 8 + length + header["nbytes"]]
    new_payload = old_payload if payload is None else payload
    header = {key: value for key, value in {**header, **(header_update or {})}.items() if value is not None}
    header.pop("nbytes")
    return b"".join(bytes(part) for part in [*frame(header, [new_payload]), *frame({"kind": "end", "batches": 1})])


@pytest.mark.parametrize(
    ("encoding", "change", "message"),
    [
        ("zstd", {"encoding": "brotli"}, "unknown encoding 'brotli'"),
        ("zstd", {"filter": "paeth"}, "unknown filter 'paeth'"),
        ("zstd", {"filter": None}, "unknown filter None"),
        ("zstd", {"sizes": [1, 2, 3]}, "malformed zstd batch frame"),
        ("zstd", {"dtype": "float32"}, "malformed zstd batch frame"),
        ("zstd", {"shape": [4, 48, 32, 3]}, "decompressed to more"),
        ("zstd", {"shape": [4, 48, 128, 3]}, "decompressed to 9216 bytes"),
        ("jpeg", {"shape": [4, 48, 32, 3]}, "could not be decoded"),
        ("jpeg", {"shape": [4, 48, 128, 3]}, "a jpeg image of"),
        ("jpeg", {"shape": [4, 48, 64, 4]}, "a jpeg image of"),
    ],
)
def test_an_encoded_frame_that_does_not_decode_is_a_protocol_error(
    photo_batch: np.ndarray, encoding: str, change: dict, message: str
) -> None:
    data = corrupt(encoded_stream(photo_batch, encoding), change)
    with pytest.raises(ProtocolError, match=message):
        list(read_frames(io.BytesIO(data)))


@pytest.mark.parametrize("encoding", ["zstd", "jpeg"])
def test_corrupt_encoded_bytes_are_a_protocol_error(photo_batch: np.ndarray, encoding: str) -> None:
    data = encoded_stream(photo_batch, encoding)
    (header, _), _ = read_frames(io.BytesIO(data))
    garbage = bytes(range(256)) * (header["nbytes"] // 256 + 1)
    with pytest.raises(ProtocolError, match="could not be"):
        list(read_frames(io.BytesIO(corrupt(data, payload=garbage[: header["nbytes"]]))))


def test_a_stream_cut_inside_an_encoded_payload_is_a_protocol_error(photo_batch: np.ndarray) -> None:
    with pytest.raises(ProtocolError, match="inside a batch frame"):
        list(read_frames(io.BytesIO(encoded_stream(photo_batch, "zstd")[:-200])))


def test_decode_payload_refuses_an_unknown_encoding_by_name() -> None:
    with pytest.raises(ProtocolError, match="upgrade augserve_client"):
        decode_payload(
            {"encoding": "webp", "shape": [1, 1, 1, 3], "dtype": "uint8", "sizes": [0]}, np.zeros(0, np.uint8)
        )


def test_only_uint8_images_are_encoded() -> None:
    with pytest.raises(ValueError, match="uint8"):
        encode_image(np.zeros((2, 2, 3), np.float32), "zstd")
    with pytest.raises(ValueError, match="unknown encoding"):
        encode_image(np.zeros((2, 2, 3), np.uint8), "gzip")


