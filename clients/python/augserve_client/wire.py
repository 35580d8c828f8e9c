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

import io
import json
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
    """Shape, dtype and data offset of an ``.npy`` payload, read from its header alone."""
    stream = io.BytesIO(data[:4096])
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
    count = int(np.prod(shape))
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


class TarReader:
    """Incremental reader of the variant tar: feed chunks, get ``(name, data)`` members as they complete."""

    def __init__(self) -> None:
        self._queue = ByteQueue()
        self.complete = False

    def feed(self, chunk: Buffer) -> Iterator[tuple[str, bytearray]]:
        self._queue.feed(chunk)
        while not self.complete:
            header = self._queue.peek(TAR_BLOCK)
            if header is None:
                return
            if not any(header):
                self.complete = True
                return
            info = _tar_info(header)
            total = TAR_BLOCK + info.size + (-info.size % TAR_BLOCK)
            member = self._queue.take(total)
            if member is None:
                return
            yield info.name, member[TAR_BLOCK : TAR_BLOCK + info.size]

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


class FrameReader:
    """Incremental reader of batch frames: feed chunks, get ``(header, payload)`` pairs as they complete."""

    def __init__(self) -> None:
        self._queue = ByteQueue()
        self._header: dict[str, Any] | None = None
        self.complete = False

    def feed(self, chunk: Buffer) -> Iterator[tuple[dict[str, Any], bytearray]]:
        self._queue.feed(chunk)
        while True:
            if self._header is None:
                self._header = self._read_header()
                if self._header is None:
                    return
            payload = self._queue.take(int(self._header["nbytes"]))
            if payload is None:
                return
            header, self._header = self._header, None
            self.complete = header["kind"] == "end"
            yield header, payload

    def _read_header(self) -> dict[str, Any] | None:
        prefix = self._queue.peek(_FRAME_PREFIX.size)
        if prefix is None:
            return None
        magic, length = _FRAME_PREFIX.unpack(prefix)
        if magic != FRAME_MAGIC:
            raise ProtocolError(f"expected a frame, got bytes {bytes(prefix[:4])!r}")
        encoded = self._queue.peek(_FRAME_PREFIX.size + length)
        if encoded is None:
            return None
        self._queue.take(_FRAME_PREFIX.size + length)
        return json.loads(encoded[_FRAME_PREFIX.size :])

    def close(self) -> None:
        if not self.complete:
            raise ProtocolError("the batch stream ended before its end frame: the response is incomplete")


def batch_array(header: dict[str, Any], payload: bytearray) -> np.ndarray:
    """The (N, H, W, C) array of a batch frame, as a writable view on its payload."""
    return np.frombuffer(payload, dtype=np.dtype(header["dtype"])).reshape(header["shape"])
