"""The wire formats: our writers against our readers, and both against Python's tarfile and numpy's .npy."""

from __future__ import annotations

import io
import itertools
import json
import random
import tarfile
from collections.abc import Iterator

import numpy as np
import pytest
from augserve_client.protocol.errors import ProtocolError
from augserve_client.protocol.wire import (
    END_OF_ARCHIVE,
    ERROR_MEMBER,
    TAR_BLOCK,
    batch_array,
    batch_frame,
    batch_header,
    frame,
    frame_size,
    header_size,
    json_bytes,
    member_stem,
    npy_parts,
    npy_shape,
    read_frames,
    read_npy,
    read_tar,
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


class Trickle:
    """A body that hands out ``data`` in reads of the sizes given, as a socket does: never more than asked."""

    def __init__(self, data: bytes, sizes: Iterator[int]) -> None:
        self.data, self.sizes, self.position = data, sizes, 0

    @property
    def left(self) -> int:
        return len(self.data) - self.position

    def readinto(self, buffer: memoryview) -> int:
        size = min(len(buffer), next(self.sizes), self.left)
        buffer[:size] = self.data[self.position : self.position + size]
        self.position += size
        return size


def read_all(members: Iterator[tuple[str, bytearray]]) -> list[tuple[str, bytes]]:
    return [(name, bytes(data)) for name, data in members]


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
    assert read_all(read_tar(io.BytesIO(buffer.getvalue()))) == MEMBERS


@pytest.mark.parametrize("split", ["whole", "byte by byte", "random chunks", "block aligned"])
def test_the_reader_does_not_care_how_bytes_arrive(split: str) -> None:
    rng = random.Random(1)
    sizes = {
        "whole": iter(lambda: 1 << 30, None),
        "byte by byte": iter(lambda: 1, None),
        "random chunks": iter(lambda: rng.randint(1, 1500), None),
        "block aligned": iter(lambda: TAR_BLOCK, None),
    }[split]
    body = Trickle(our_tar(), sizes)
    assert read_all(read_tar(body)) == MEMBERS
    assert body.left == 0


def test_members_are_yielded_as_soon_as_they_have_arrived() -> None:
    """The first member is handed out with nothing after it on the wire yet; only asking for more finds the cut."""
    first = b"".join(bytes(b) for b in tar_member("a.json", [b"{}"]))
    members = read_tar(io.BytesIO(first))
    assert [(name, bytes(data)) for name, data in [next(members)]] == [("a.json", b"{}")]
    with pytest.raises(ProtocolError, match="end-of-archive"):
        next(members)


def test_a_missing_end_marker_is_a_protocol_error() -> None:
    members = read_tar(io.BytesIO(our_tar(end=False)))
    assert [name for name, _ in itertools.islice(members, len(MEMBERS))] == [name for name, _ in MEMBERS]
    with pytest.raises(ProtocolError, match="end-of-archive"):
        next(members)


def test_a_stream_cut_inside_a_member_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match=r"inside member '00000_000\.npy'"):
        list(read_tar(io.BytesIO(our_tar()[: TAR_BLOCK + 10])))


def test_bytes_after_the_end_marker_are_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="after the end"):
        list(read_tar(io.BytesIO(our_tar() + b"x")))


def test_a_broken_connection_is_a_protocol_error() -> None:
    class Broken(io.RawIOBase):
        def readinto(self, buffer: object) -> int:
            raise ConnectionResetError("reset by peer")

    with pytest.raises(ProtocolError, match="broke off: reset by peer"):
        list(read_tar(Broken()))


def test_pythons_tarfile_notices_a_cut_inside_a_member_but_not_a_missing_end_marker() -> None:
    """Why the end marker alone is not enough for tar tools, and why the client checks it (docs/wire-format)."""
    with tarfile.open(fileobj=io.BytesIO(our_tar(end=False)), mode="r|") as archive:
        assert [info.name for info in archive] == [name for name, _ in MEMBERS]
    cut = our_tar()[: TAR_BLOCK + 10]
    with pytest.raises(tarfile.ReadError), tarfile.open(fileobj=io.BytesIO(cut), mode="r|") as archive:
        for info in archive:
            archive.extractfile(info).read()  # type: ignore[union-attr]


def test_a_malformed_header_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="malformed tar header"):
        list(read_tar(io.BytesIO(b"\x01" * TAR_BLOCK)))


def test_the_error_member_is_an_ordinary_member_with_a_json_body() -> None:
    body = {"code": "internal", "message": "boom"}
    data = b"".join(
        bytes(b) for b in [*tar_member(MEMBERS[0][0], [MEMBERS[0][1]]), *tar_member(ERROR_MEMBER, [json_bytes(body)])]
    )
    members = read_tar(io.BytesIO(data))
    got = [(name, bytes(value)) for name, value in itertools.islice(members, 2)]
    assert got[-1] == (ERROR_MEMBER, json_bytes(body))
    assert json.loads(got[-1][1]) == body
    with pytest.raises(ProtocolError):
        next(members)


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
    rng = random.Random(2)
    sizes = {
        "whole": iter(lambda: 1 << 30, None),
        "byte by byte": iter(lambda: 1, None),
        "random chunks": iter(lambda: rng.randint(1, 700), None),
    }[split]
    body = Trickle(frames_stream(BATCHES), sizes)
    frames = list(read_frames(body))
    assert body.left == 0
    assert [header["kind"] for header, _ in frames] == ["batch", "batch", "batch", "end"]
    for index, (header, payload) in enumerate(frames[:-1]):
        assert header["index"] == index and header["nbytes"] == BATCHES[index].nbytes
        assert header["shape"] == list(BATCHES[index].shape) and header["dtype"] == "uint8"
        array = batch_array(header, payload)
        np.testing.assert_array_equal(array, BATCHES[index])
        array[0, 0, 0, 0] = 1  # writable: a training loop may normalise in place
    assert frames[-1][0] == {"kind": "end", "batches": 3, "nbytes": 0}


def test_payloads_are_read_into_the_buffers_the_caller_allocates() -> None:
    """The torch dataset allocates shared memory: the payload must land there, not in a copy."""
    given: list[np.ndarray] = []

    def allocate(size: int) -> np.ndarray:
        given.append(np.full(size, 7, dtype=np.uint8))
        return given[-1]

    frames = list(read_frames(io.BytesIO(frames_stream(BATCHES)), allocate))
    assert [payload for _, payload in frames] == given
    np.testing.assert_array_equal(batch_array(frames[0][0], given[0]), BATCHES[0])
    assert np.shares_memory(batch_array(frames[0][0], frames[0][1]), given[0])


def test_frame_layout_is_magic_length_json_payload() -> None:
    data = b"".join(bytes(b) for b in frame({"kind": "batch", "x": 1}, [b"abc", b"de"]))
    assert data[:4] == b"AUGF"
    length = int.from_bytes(data[4:8], "little")
    assert json.loads(data[8 : 8 + length]) == {"kind": "batch", "x": 1, "nbytes": 5}
    assert data[8 + length :] == b"abcde"


def test_a_padded_header_reads_the_same_and_has_the_size_it_was_given() -> None:
    """The server pads batch headers to a size fixed in advance, to announce the stream's Content-Length."""
    header = batch_header(BATCHES[0].shape, "uint8", index=0, labels=[0, 0, 0])
    exact = header_size(header, BATCHES[0].nbytes)
    padded = b"".join(bytes(part) for part in batch_frame(BATCHES[0], exact + 40, index=0, labels=[0, 0, 0]))
    assert len(padded) == frame_size(exact + 40, BATCHES[0].nbytes)
    plain = b"".join(bytes(part) for part in batch_frame(BATCHES[0], index=0, labels=[0, 0, 0]))
    assert len(plain) == frame_size(exact, BATCHES[0].nbytes) == len(padded) - 40
    (read, payload), (end, _) = read_frames(io.BytesIO(padded + frames_stream([])))
    assert end["kind"] == "end"
    assert read == {**header, "nbytes": BATCHES[0].nbytes}
    np.testing.assert_array_equal(batch_array(read, payload), BATCHES[0])


def test_a_header_longer_than_its_fixed_size_is_refused() -> None:
    """A longer header would break the stream's announced Content-Length: better a failed batch."""
    with pytest.raises(ValueError, match="does not fit"):
        frame({"kind": "batch", "labels": list(range(50))}, [b"x"], header_bytes=20)


def test_a_missing_end_frame_is_a_protocol_error() -> None:
    frames = read_frames(io.BytesIO(frames_stream(BATCHES, end=False)))
    assert len(list(itertools.islice(frames, len(BATCHES)))) == len(BATCHES)
    with pytest.raises(ProtocolError, match="before its end frame"):
        next(frames)


def test_a_stream_cut_inside_a_payload_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="inside a batch frame"):
        list(read_frames(io.BytesIO(frames_stream(BATCHES)[:100])))


def test_bytes_that_are_not_a_frame_are_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="expected a frame"):
        list(read_frames(io.BytesIO(b"HTTP/1.1 500 oops")))


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
