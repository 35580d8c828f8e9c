"""The wire formats, written once: the server writes with these functions, the client reads with them.

Two formats travel over HTTP, both streamed as they are produced:

* **Variant tar** (``POST /v1/augment``): a ustar stream in the WebDataset naming convention. Each variant is
  ``{image:05d}_{variant:03d}.{ext}`` followed by ``{image:05d}_{variant:03d}.json`` (its metadata), so
  ``curl ... | tar x`` writes files and WebDataset readers read it. A complete stream ends with tar's
  end-of-archive marker (two zero blocks). If the server fails after streaming began it writes a member named
  ``__error__.json`` and closes the connection *without* the marker, so the failure cannot pass for a short,
  complete archive.
* **Batch frames** (epoch streaming): ``b"AUGF"``, a little-endian ``uint32`` header length, a UTF-8 JSON
  header, then ``header["nbytes"]`` payload bytes. ``kind`` is ``batch`` (payload: a C-ordered uint8 array of
  ``header["shape"]``), ``end`` (the stream is complete; ``batches`` says how many were sent) or ``error``.

Member and frame payloads are handed around as lists of buffers so the writer joins them exactly once.
"""

from __future__ import annotations

import functools
import io
import json
import math
import struct
import tarfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from .errors import ProtocolError

Buffer = bytes | bytearray | memoryview

TAR_BLOCK = 512
END_OF_ARCHIVE = bytes(2 * TAR_BLOCK)
ERROR_MEMBER = "__error__.json"
FRAME_MAGIC = b"AUGF"
_FRAME_PREFIX = struct.Struct("<4sI")
MEDIA_TYPE_TAR = "application/x-tar"
MEDIA_TYPE_FRAMES = "application/vnd.augserve.frames"
NPY_PEEK = 4096  # bytes of an .npy payload searched for its header
NPY_MAGIC = b"\x93NUMPY"


def member_stem(image: int, variant: int) -> str:
    """The WebDataset key of a variant: ``{image:05d}_{variant:03d}``."""
    return f"{image:05d}_{variant:03d}"


# --- npy -------------------------------------------------------------------------------------------------


def npy_parts(array: np.ndarray) -> list[Buffer]:
    """An ``.npy`` file as [header, raw data] without copying the array's pixels."""
    array = np.ascontiguousarray(array)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    return [header.getvalue(), raw_bytes(array)]


def raw_bytes(array: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array, without a copy; unlike ``memoryview(a).cast("B")`` it accepts an
    array with a 0 in its shape (an empty batch, an empty upload)."""
    return memoryview(array.reshape(-1).view(np.uint8))


def npy_shape(data: Buffer) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of an ``.npy`` payload, read from its header alone.

    numpy parses a header with ``ast.literal_eval`` (~28 us, as much as copying the 150 KB it describes), and
    every variant of a stream has the same header, so parsed headers are remembered by their bytes."""
    head = bytes(data[:NPY_PEEK])
    end = _npy_header_end(head)
    return _npy_header(head if end is None else head[:end])


def _npy_header_end(head: bytes) -> int | None:
    """Where a version 1-3 header ends, from its length field; None when that cannot be read from ``head``."""
    if not head.startswith(NPY_MAGIC) or len(head) < 12:
        return None
    length_bytes = {1: 2, 2: 4, 3: 4}.get(head[6])
    if length_bytes is None:
        return None
    end = 8 + length_bytes + int.from_bytes(head[8 : 8 + length_bytes], "little")
    return end if end <= len(head) else None


@functools.lru_cache(maxsize=64)
def _npy_header(head: bytes) -> tuple[tuple[int, ...], np.dtype, int]:
    stream = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(stream)
    except (ValueError, OSError, SyntaxError) as error:
        raise ValueError(f"not a valid .npy payload: {error}") from error
    if fortran:
        raise ValueError("Fortran-ordered .npy payloads are not supported")
    return shape, dtype, stream.tell()


def read_npy(data: Buffer) -> np.ndarray:
    """Decode an ``.npy`` payload as a view on ``data`` (no copy)."""
    shape, dtype, offset = npy_shape(data)
    count = math.prod(shape)
    if len(data) - offset != count * dtype.itemsize:
        raise ValueError(f".npy payload holds {len(data) - offset} bytes, its header promises {count * dtype.itemsize}")
    return np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)


# --- tar -------------------------------------------------------------------------------------------------


def tar_member(name: str, parts: list[Buffer]) -> list[Buffer]:
    """One tar member (header, data, padding). ``mtime`` is 0 so equal requests give equal bytes."""
    size = sum(len(part) for part in parts)
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    padding = -size % TAR_BLOCK
    return [info.tobuf(format=tarfile.USTAR_FORMAT), *parts, bytes(padding)]


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


class ByteQueue:
    """Bytes arriving in chunks, taken out in exact sizes; one copy per item taken."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._start = 0

    def feed(self, chunk: Buffer) -> None:
        if self._start and self._start * 2 >= len(self._buffer):
            del self._buffer[: self._start]
            self._start = 0
        self._buffer += chunk

    def __len__(self) -> int:
        return len(self._buffer) - self._start

    def peek(self, size: int) -> bytearray | None:
        if len(self) < size:
            return None
        return self._buffer[self._start : self._start + size]

    def take(self, size: int) -> bytearray | None:
        """The next ``size`` bytes as a fresh, writable bytearray, or None if they have not all arrived."""
        item = self.peek(size)
        if item is not None:
            self._start += size
        return item


class _Reader:
    """Shared by both readers: headers gather in a :class:`ByteQueue`; a body (a member's data, a frame's
    payload) is copied once, straight from the arriving chunks into its own buffer, which is handed out.

    The queue is only ever topped up to the size of the header being read, so when a body starts the queue is
    empty and every later byte of the body skips it. Reading a 4.8 MB batch this way costs one copy instead of
    two (queue, then slice) and never grows a buffer by appending.
    """

    def __init__(self) -> None:
        self._queue = ByteQueue()
        self._body = bytearray()
        self._filled = 0
        self._skip = 0  # bytes to drop after the body (a tar member's padding)
        self.complete = False

    def _top_up(self, data: memoryview, size: int) -> memoryview:
        """Move just enough of ``data`` into the queue for it to hold ``size`` bytes; returns the rest."""
        need = size - len(self._queue)
        if need > 0 and data:
            self._queue.feed(data[:need])
            return data[need:]
        return data

    def _start_body(self, size: int, skip: int = 0) -> None:
        self._body, self._filled, self._skip = bytearray(size), 0, skip

    def _fill(self, data: memoryview) -> tuple[memoryview, bool]:
        """Copy what ``data`` holds of the body (then drop its padding); returns (the rest, body complete?)."""
        take = min(len(data), len(self._body) - self._filled)
        if take:
            self._body[self._filled : self._filled + take] = data[:take]
            self._filled += take
            data = data[take:]
        if self._filled < len(self._body):
            return data, False
        dropped = min(self._skip, len(data))
        self._skip -= dropped
        return data[dropped:], not self._skip


class TarReader(_Reader):
    """Incremental reader of the variant tar: feed chunks, get ``(name, data)`` members as they complete."""

    def __init__(self) -> None:
        super().__init__()
        self._name: str | None = None

    def feed(self, chunk: Buffer) -> Iterator[tuple[str, bytearray]]:
        data = memoryview(chunk).cast("B")
        while not self.complete:
            if self._name is None:
                data = self._top_up(data, TAR_BLOCK)
                header = self._queue.peek(TAR_BLOCK)
                if header is None:
                    return
                if not any(header):
                    self.complete = True
                    return
                info = _tar_info(header)
                self._queue.take(TAR_BLOCK)
                self._name = info.name
                self._start_body(info.size, -info.size % TAR_BLOCK)
            data, done = self._fill(data)
            if not done:
                return
            name, self._name = self._name, None
            yield name, self._body

    def close(self) -> None:
        """Call at the end of the stream: a missing end-of-archive marker means it was cut short."""
        if not self.complete:
            raise ProtocolError("the tar stream ended before its end-of-archive marker: the response is incomplete")


def _tar_info(header: bytearray) -> tarfile.TarInfo:
    try:
        return tarfile.TarInfo.frombuf(bytes(header), "utf-8", "surrogateescape")
    except tarfile.HeaderError as error:
        raise ProtocolError(f"malformed tar header in the response: {error}") from error


# --- frames ----------------------------------------------------------------------------------------------


def frame(header: dict[str, Any], payload: list[Buffer] | None = None) -> list[Buffer]:
    """One frame; ``header["nbytes"]`` is filled in from the payload."""
    payload = payload or []
    encoded = json_bytes({**header, "nbytes": sum(len(part) for part in payload)})
    return [_FRAME_PREFIX.pack(FRAME_MAGIC, len(encoded)), encoded, *payload]


def batch_frame(images: np.ndarray, **fields: Any) -> list[Buffer]:
    """A batch frame: ``images`` is (N, H, W, C) uint8; ``fields`` carry labels, indices, seeds, ..."""
    images = np.ascontiguousarray(images)
    header = {"kind": "batch", "shape": list(images.shape), "dtype": str(images.dtype), **fields}
    return frame(header, [raw_bytes(images)])


class FrameReader(_Reader):
    """Incremental reader of batch frames: feed chunks, get ``(header, payload)`` pairs as they complete."""

    def __init__(self) -> None:
        super().__init__()
        self._header: dict[str, Any] | None = None

    def feed(self, chunk: Buffer) -> Iterator[tuple[dict[str, Any], bytearray]]:
        data = memoryview(chunk).cast("B")
        while True:
            if self._header is None:
                data, self._header = self._read_header(data)
                if self._header is None:
                    return
                self._start_body(int(self._header["nbytes"]))
            data, done = self._fill(data)
            if not done:
                return
            header, self._header = self._header, None
            self.complete = header["kind"] == "end"
            yield header, self._body

    def _read_header(self, data: memoryview) -> tuple[memoryview, dict[str, Any] | None]:
        data = self._top_up(data, _FRAME_PREFIX.size)
        prefix = self._queue.peek(_FRAME_PREFIX.size)
        if prefix is None:
            return data, None
        magic, length = _FRAME_PREFIX.unpack(prefix)
        if magic != FRAME_MAGIC:
            raise ProtocolError(f"expected a frame, got bytes {bytes(prefix[:4])!r}")
        data = self._top_up(data, _FRAME_PREFIX.size + length)
        encoded = self._queue.take(_FRAME_PREFIX.size + length)
        if encoded is None:
            return data, None
        return data, json.loads(encoded[_FRAME_PREFIX.size :])

    def close(self) -> None:
        if not self.complete:
            raise ProtocolError("the batch stream ended before its end frame: the response is incomplete")


def batch_array(header: dict[str, Any], payload: bytearray) -> np.ndarray:
    """The (N, H, W, C) array of a batch frame, as a writable view on its payload."""
    return np.frombuffer(payload, dtype=np.dtype(header["dtype"])).reshape(header["shape"])
