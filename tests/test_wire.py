"""The wire formats: our writers against our readers, and both against Python's tarfile and numpy's .npy."""

from __future__ import annotations

import io
import json
import random
import tarfile
from collections.abc import Iterator

import numpy as np
import pytest
from augserve_client.errors import ProtocolError
from augserve_client.wire import (
    END_OF_ARCHIVE,
    ERROR_MEMBER,
    TAR_BLOCK,
    ByteQueue,
    FrameReader,
    TarReader,
    batch_array,
    batch_frame,
    frame,
    json_bytes,
    member_stem,
    npy_parts,
    npy_shape,
    read_npy,
    tar_member,
)

MEMBERS: list[tuple[str, bytes]] = [
    ("00000_000.npy", b"".join(npy_parts(np.arange(24, dtype=np.uint8).reshape(2, 4, 3)))),
    ("00000_000.json", json_bytes({"seed": 1, "applied": []})),
    ("00000_001.png", bytes(range(256)) * 3),  # 768 bytes: crosses a block boundary
    ("00000_001.json", json_bytes({"seed": 2})),
    ("00001_000.bin", b""),  # an empty member has a header and no data blocks
    ("00001_000.json", b"x" * TAR_BLOCK),  # exactly one block: no padding
]


def our_tar(members: list[tuple[str, bytes]] = MEMBERS, end: bool = True) -> bytes:
    buffers = [buffer for name, data in members for buffer in tar_member(name, [data[:5], data[5:]])]
    return b"".join(bytes(buffer) for buffer in [*buffers, *([END_OF_ARCHIVE] if end else [])])


def chunked(data: bytes, sizes: Iterator[int]) -> Iterator[bytes]:
    position = 0
    while position < len(data):
        size = next(sizes)
        yield data[position : position + size]
        position += size


def read_all(reader: TarReader | FrameReader, chunks: Iterator[bytes]) -> list[tuple[object, bytes]]:
    return [(key, bytes(value)) for chunk in chunks for key, value in reader.feed(chunk)]


def test_member_stem_is_the_webdataset_key() -> None:
    assert member_stem(0, 0) == "00000_000"
    assert member_stem(12, 7) == "00012_007"
    assert member_stem(123456, 1000) == "123456_1000"  # wider numbers are not truncated


def test_our_tar_is_read_by_pythons_tarfile_as_a_stream() -> None:
    data = our_tar()
    assert len(data) % TAR_BLOCK == 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as archive:
        read = []
        for info in archive:
            assert info.isfile() and info.mtime == 0 and info.mode == 0o644
            extracted = archive.extractfile(info)
            assert extracted is not None
            read.append((info.name, extracted.read()))
    assert read == MEMBERS


def test_equal_members_give_equal_bytes() -> None:
    assert our_tar() == our_tar()


def test_our_reader_reads_pythons_tarfile_output() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w|", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in MEMBERS:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    reader = TarReader()
    assert read_all(reader, iter([buffer.getvalue()])) == MEMBERS
    reader.close()


@pytest.mark.parametrize("split", ["whole", "byte by byte", "random chunks", "block aligned"])
def test_the_incremental_reader_does_not_care_how_bytes_arrive(split: str) -> None:
    data = our_tar()
    rng = random.Random(1)
    sizes = {
        "whole": iter(lambda: len(data), None),
        "byte by byte": iter(lambda: 1, None),
        "random chunks": iter(lambda: rng.randint(1, 1500), None),
        "block aligned": iter(lambda: TAR_BLOCK, None),
    }[split]
    reader = TarReader()
    assert read_all(reader, chunked(data, sizes)) == MEMBERS
    assert reader.complete
    reader.close()


def test_members_are_yielded_as_soon_as_they_are_complete() -> None:
    first = b"".join(bytes(b) for b in tar_member("a.json", [b"{}"]))
    reader = TarReader()
    assert list(reader.feed(first[:-1])) == []
    assert [(name, bytes(data)) for name, data in reader.feed(first[-1:])] == [("a.json", b"{}")]
    assert not reader.complete


def test_a_missing_end_marker_is_a_protocol_error() -> None:
    reader = TarReader()
    assert read_all(reader, iter([our_tar(end=False)])) == MEMBERS
    with pytest.raises(ProtocolError, match="end-of-archive"):
        reader.close()


def test_a_stream_cut_inside_a_member_is_a_protocol_error() -> None:
    data = our_tar()
    reader = TarReader()
    got = read_all(reader, iter([data[: TAR_BLOCK + 10]]))
    assert got == []
    with pytest.raises(ProtocolError):
        reader.close()


def test_pythons_tarfile_notices_a_cut_inside_a_member_but_not_a_missing_end_marker() -> None:
    """Why the end marker alone is not enough for tar tools, and why the client checks it (docs/wire-format)."""
    with tarfile.open(fileobj=io.BytesIO(our_tar(end=False)), mode="r|") as archive:
        assert [info.name for info in archive] == [name for name, _ in MEMBERS]
    cut = our_tar()[: TAR_BLOCK + 10]
    with pytest.raises(tarfile.ReadError), tarfile.open(fileobj=io.BytesIO(cut), mode="r|") as archive:
        for info in archive:
            archive.extractfile(info).read()  # type: ignore[union-attr]


def test_a_malformed_header_is_a_protocol_error() -> None:
    reader = TarReader()
    with pytest.raises(ProtocolError, match="malformed tar header"):
        list(reader.feed(b"\x01" * TAR_BLOCK))


def test_the_error_member_is_an_ordinary_member_with_a_json_body() -> None:
    body = {"code": "internal", "message": "boom"}
    data = b"".join(
        bytes(b) for b in [*tar_member(MEMBERS[0][0], [MEMBERS[0][1]]), *tar_member(ERROR_MEMBER, [json_bytes(body)])]
    )
    reader = TarReader()
    got = read_all(reader, iter([data]))
    assert got[-1] == (ERROR_MEMBER, json_bytes(body))
    assert json.loads(got[-1][1]) == body
    with pytest.raises(ProtocolError):
        reader.close()


def test_json_bytes_is_compact_and_sorted() -> None:
    assert json_bytes({"b": 1, "a": [1, 2]}) == b'{"a":[1,2],"b":1}'


# --- frames ------------------------------------------------------------------------------------------------


def frames_stream(batches: list[np.ndarray], end: bool = True) -> bytes:
    buffers = [
        *(
            part
            for index, images in enumerate(batches)
            for part in batch_frame(images, index=index, labels=[0] * len(images))
        ),
        *(frame({"kind": "end", "batches": len(batches)}) if end else []),
    ]
    return b"".join(bytes(buffer) for buffer in buffers)


BATCHES = [
    np.random.default_rng(seed).integers(0, 256, (n, 5, 7, 3), dtype=np.uint8) for seed, n in ((0, 3), (1, 1), (2, 2))
]


@pytest.mark.parametrize("split", ["whole", "byte by byte", "random chunks"])
def test_frames_round_trip_however_bytes_arrive(split: str) -> None:
    data = frames_stream(BATCHES)
    rng = random.Random(2)
    sizes = {
        "whole": iter(lambda: len(data), None),
        "byte by byte": iter(lambda: 1, None),
        "random chunks": iter(lambda: rng.randint(1, 700), None),
    }[split]
    reader = FrameReader()
    frames = [(header, payload) for chunk in chunked(data, sizes) for header, payload in reader.feed(chunk)]
    assert [header["kind"] for header, _ in frames] == ["batch", "batch", "batch", "end"]
    for index, (header, payload) in enumerate(frames[:-1]):
        assert header["index"] == index and header["nbytes"] == BATCHES[index].nbytes
        assert header["shape"] == list(BATCHES[index].shape) and header["dtype"] == "uint8"
        array = batch_array(header, payload)
        np.testing.assert_array_equal(array, BATCHES[index])
        array[0, 0, 0, 0] = 1  # writable: a training loop may normalise in place
    assert frames[-1][0] == {"kind": "end", "batches": 3, "nbytes": 0}
    assert reader.complete
    reader.close()


def test_frame_layout_is_magic_length_json_payload() -> None:
    data = b"".join(bytes(b) for b in frame({"kind": "batch", "x": 1}, [b"abc", b"de"]))
    assert data[:4] == b"AUGF"
    length = int.from_bytes(data[4:8], "little")
    assert json.loads(data[8 : 8 + length]) == {"kind": "batch", "x": 1, "nbytes": 5}
    assert data[8 + length :] == b"abcde"


def test_a_missing_end_frame_is_a_protocol_error() -> None:
    reader = FrameReader()
    assert len(list(reader.feed(frames_stream(BATCHES, end=False)))) == len(BATCHES)
    with pytest.raises(ProtocolError, match="end frame"):
        reader.close()


def test_bytes_that_are_not_a_frame_are_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="expected a frame"):
        list(FrameReader().feed(b"HTTP/1.1 500 oops"))


# --- npy ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "array",
    [
        np.arange(60, dtype=np.uint8).reshape(4, 5, 3),
        np.arange(20, dtype=np.uint8).reshape(4, 5),
        np.zeros((0, 3, 3), np.uint8),
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.arange(60, dtype=np.uint8).reshape(4, 5, 3)[:, ::-1],  # not contiguous: written C-ordered
    ],
    ids=["rgb", "grey", "empty", "float32", "strided"],
)
def test_npy_parts_round_trip_through_read_npy_and_numpy(array: np.ndarray) -> None:
    data = b"".join(bytes(part) for part in npy_parts(array))
    np.testing.assert_array_equal(read_npy(data), array)
    np.testing.assert_array_equal(np.load(io.BytesIO(data)), array)
    shape, dtype, offset = npy_shape(data)
    assert (shape, dtype) == (array.shape, array.dtype)
    assert len(data) - offset == array.nbytes


def test_read_npy_reads_numpys_own_files_without_copying() -> None:
    buffer = io.BytesIO()
    array = np.arange(30, dtype=np.uint8).reshape(2, 5, 3)
    np.save(buffer, array)
    data = bytearray(buffer.getvalue())
    read = read_npy(data)
    np.testing.assert_array_equal(read, array)
    data[-1] = 0  # the result is a view on the payload
    assert read[-1, -1, -1] == 0


def test_npy_parts_do_not_copy_the_pixels() -> None:
    array = np.zeros((2, 3, 3), np.uint8)
    parts = npy_parts(array)
    array[0, 0, 0] = 9
    assert bytes(parts[1])[0] == 9


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not an npy file", "not a valid .npy payload"),
        (b"".join(bytes(p) for p in npy_parts(np.zeros((4, 4), np.uint8))) + b"extra", "header promises 16"),
        (b"".join(bytes(p) for p in npy_parts(np.zeros((4, 4), np.uint8)))[:-1], "header promises 16"),
    ],
    ids=["garbage", "too long", "truncated"],
)
def test_read_npy_refuses_bad_payloads(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_npy(data)


def test_fortran_ordered_npy_is_refused() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.asfortranarray(np.zeros((3, 4), np.uint8)))
    with pytest.raises(ValueError, match="Fortran"):
        npy_shape(buffer.getvalue())


def test_byte_queue_hands_out_exact_sizes() -> None:
    queue = ByteQueue()
    queue.feed(b"abc")
    assert queue.take(4) is None and len(queue) == 3
    queue.feed(memoryview(b"defg"))
    assert queue.peek(2) == b"ab" and len(queue) == 7
    assert queue.take(4) == b"abcd"
    queue.feed(b"h")  # compaction after most of the buffer was consumed keeps the rest
    assert queue.take(4) == b"efgh" and len(queue) == 0
