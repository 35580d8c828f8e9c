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
  A writer may pad a header with spaces (JSON allows them) to make a frame's size known before its contents.
  A batch frame may carry its images encoded (``header["encoding"]``: ``zstd``, lossless, or ``jpeg``), each
  image on its own, one after another, ``header["sizes"]`` bytes each; the reader decodes them into the array
  the raw frame would have given. No ``encoding`` key means raw.

Member and frame payloads are handed around as lists of buffers so the writer joins them exactly once.
"""

from __future__ import annotations

import functools
import http.client
import io
import json
import math
import struct
import tarfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from .encodings import JPEG_QUALITY, ZSTD_FILTER, decode_payload, encode_image
from .errors import ProtocolError

Buffer = bytes | bytearray | memoryview
Frame = tuple[dict[str, Any], np.ndarray]
Allocate = Callable[[int], np.ndarray]  # nbytes -> a flat, writable uint8 array to read a payload into


class Body(Protocol):
    """What the readers read from: a response body (or any binary file) that fills the buffer it is given."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


TAR_BLOCK = 512
END_OF_ARCHIVE = bytes(2 * TAR_BLOCK)
ERROR_MEMBER = "__error__.json"
FRAME_MAGIC = b"AUGF"
_FRAME_PREFIX = struct.Struct("<4sI")
MEDIA_TYPE_TAR = "application/x-tar"
MEDIA_TYPE_FRAMES = "application/vnd.augserve.frames"
NPY_PEEK = 4096  # bytes of an .npy payload searched for its header
NPY_MAGIC = b"\x93NUMPY"
PART_ALIGN = 8  # a batch part starts at a multiple of this many payload bytes: int64 and float views stay aligned


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

    numpy parses a header with ``ast.literal_eval``, which costs about as much as copying a small variant's
    pixels, and every variant of a stream has the same header, so parsed headers are remembered by their bytes."""
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


def read_exactly(body: Body, buffer: memoryview) -> int:
    """Fill ``buffer`` from ``body``; returns the bytes read, fewer only where the body ended."""
    filled = 0
    try:
        while filled < len(buffer):
            count = body.readinto(buffer[filled:])
            if not count:
                break
            filled += count
    except (OSError, http.client.HTTPException) as error:
        raise ProtocolError(f"the stream broke off: {error}") from error
    return filled


def _fill(body: Body, buffer: Buffer | np.ndarray, incomplete: str) -> None:
    """Fill all of ``buffer``, or raise ``ProtocolError`` saying where the stream ended."""
    if read_exactly(body, memoryview(buffer)) < len(buffer):
        raise ProtocolError(f"{incomplete}: the response is incomplete")


def _read(body: Body, size: int, incomplete: str) -> bytearray:
    data = bytearray(size)
    _fill(body, data, incomplete)
    return data


def _expect_end(body: Body, padding: bytes = b"") -> None:
    """Read to the end of the body, which must hold nothing more than ``padding`` bytes (tar tools pad an
    archive to whole records with zeros). Reading to the end is also what frees the connection."""
    rest = memoryview(bytearray(TAR_BLOCK * 20))
    while count := read_exactly(body, rest):
        if bytes(rest[:count]).strip(padding):
            raise ProtocolError("bytes after the end of the stream")


def read_tar(body: Body) -> Iterator[tuple[str, bytearray]]:
    """The variant tar's ``(name, data)`` members, each read as soon as it has arrived.

    A member's data is read straight into its own buffer. A stream that ends before tar's end-of-archive
    marker raises :class:`ProtocolError`: a failed or cut stream never passes for a short, complete one."""
    while True:
        header = _read(body, TAR_BLOCK, "the tar stream ended before its end-of-archive marker")
        if not any(header):
            _read(body, TAR_BLOCK, "the tar stream ended inside its end-of-archive marker")
            _expect_end(body, b"\0")
            return
        info = _tar_info(header)
        data = _read(body, info.size, f"the tar stream ended inside member {info.name!r}")
        _read(body, -info.size % TAR_BLOCK, f"the tar stream ended inside member {info.name!r}")
        yield info.name, data


def _tar_info(header: bytearray) -> tarfile.TarInfo:
    try:
        return tarfile.TarInfo.frombuf(bytes(header), "utf-8", "surrogateescape")
    except tarfile.HeaderError as error:
        raise ProtocolError(f"malformed tar header in the response: {error}") from error


# --- frames ----------------------------------------------------------------------------------------------


def frame(header: dict[str, Any], payload: list[Buffer] | None = None, header_bytes: int = 0) -> list[Buffer]:
    """One frame; ``header["nbytes"]`` is filled in from the payload. The JSON header is padded with spaces to
    ``header_bytes`` (and refused if longer), so that a writer can fix a frame's size before it knows the
    header's values."""
    payload = payload or []
    encoded = _header_json(header, sum(len(part) for part in payload))
    if len(encoded) > header_bytes > 0:
        raise ValueError(f"a frame header of {len(encoded)} bytes does not fit the {header_bytes} fixed for it")
    encoded = encoded.ljust(header_bytes)
    return [_FRAME_PREFIX.pack(FRAME_MAGIC, len(encoded)), encoded, *payload]


def header_size(header: dict[str, Any], nbytes: int) -> int:
    """Bytes of the (unpadded) JSON header of a frame with ``nbytes`` of payload."""
    return len(_header_json(header, nbytes))


def _header_json(header: dict[str, Any], nbytes: int) -> bytes:
    return json_bytes({**header, "nbytes": nbytes})


def frame_size(header_bytes: int, nbytes: int) -> int:
    """Bytes of a whole frame whose JSON header takes ``header_bytes``."""
    return _FRAME_PREFIX.size + header_bytes + nbytes


def batch_header(shape: tuple[int, ...], dtype: str, **fields: Any) -> dict[str, Any]:
    """A batch frame's header (without ``nbytes``)."""
    return {"kind": "batch", "shape": list(shape), "dtype": dtype, **fields}


def batch_frame(
    images: np.ndarray,
    header_bytes: int = 0,
    *,
    encoding: str = "raw",
    quality: int | None = None,
    parts: Sequence[tuple[str, np.ndarray]] = (),
    **fields: Any,
) -> list[Buffer]:
    """A batch frame: ``images`` is (N, H, W, C) uint8; ``fields`` carry labels, indices, seeds, ...

    ``parts`` are named arrays that travel after the images in the same payload (a batch's masks, boxes and
    keypoints: :class:`.targets.BatchTargets`), each starting at a multiple of :data:`PART_ALIGN` bytes so a
    reader views it in place; the header lists them as ``[name, dtype, shape]``. ``encoding`` other than
    ``raw`` encodes every image (:func:`encode_image`) into an encoded frame, which carries no parts."""
    images = np.ascontiguousarray(images)
    if encoding == "raw":
        listed, buffers = _packed_parts(parts, images.nbytes)
        header = batch_header(images.shape, str(images.dtype), **({"parts": listed} if parts else {}), **fields)
        return frame(header, [raw_bytes(images), *buffers], header_bytes)
    if parts:
        raise ValueError("an encoded batch frame carries no parts")
    encoded = [encode_image(image, encoding, quality) for image in images]
    return encoded_batch_frame(images.shape, encoded, encoding, quality, header_bytes, **fields)


def empty_bytes(size: int) -> np.ndarray:
    """A flat uint8 buffer, not zeroed (it is about to be overwritten)."""
    return np.empty(size, dtype=np.uint8)


def read_frames(body: Body, allocate: Allocate = empty_bytes) -> Iterator[Frame]:
    """The batch frames of a stream, ``(header, payload)``, each read as soon as it has arrived.

    A payload is read straight from the body into ``allocate(nbytes)`` (a flat uint8 array; the torch dataset
    passes shared memory, so DataLoader hands the batch to the trainer without another copy). An encoded batch
    frame is read into a buffer of its own, and its images are decoded into ``allocate(raw size)``: the payload
    is then what the raw frame would have held (``header["nbytes"]`` still says what travelled). A stream that
    ends before its end frame raises :class:`ProtocolError`."""
    while True:
        prefix = _read(body, _FRAME_PREFIX.size, "the batch stream ended before its end frame")
        magic, length = _FRAME_PREFIX.unpack(prefix)
        if magic != FRAME_MAGIC:
            raise ProtocolError(f"expected a frame, got bytes {bytes(prefix[:4])!r}")
        header = json.loads(_read(body, length, "the batch stream ended inside a frame header"))
        encoded = "encoding" in header
        payload = (empty_bytes if encoded else allocate)(int(header["nbytes"]))
        _fill(body, payload, f"the batch stream ended inside a {header['kind']} frame")
        if encoded:
            payload = decode_payload(header, payload, allocate)
        if header["kind"] == "end":
            _expect_end(body)
            yield header, payload
            return
        yield header, payload


def batch_array(header: dict[str, Any], payload: np.ndarray) -> np.ndarray:
    """The (N, H, W, C) array of a batch frame, as a writable view on its payload."""
    dtype, shape = np.dtype(header["dtype"]), header["shape"]
    return payload[: math.prod(shape) * dtype.itemsize].view(dtype).reshape(shape)


def batch_parts(header: dict[str, Any], payload: np.ndarray) -> dict[str, np.ndarray]:
    """The named arrays a batch frame carries after its images (``parts`` in its header), as views on the
    payload. A part list that does not add up to the payload raises :class:`ProtocolError`."""
    offset = math.prod(header["shape"]) * np.dtype(header["dtype"]).itemsize
    arrays = {}
    for name, dtype_name, shape in header.get("parts", []):
        dtype = np.dtype(dtype_name)
        offset += -offset % PART_ALIGN
        nbytes = math.prod(shape) * dtype.itemsize
        if offset + nbytes > len(payload):
            raise ProtocolError(f"batch part {name!r} reaches past the frame's {len(payload)} payload bytes")
        arrays[name] = payload[offset : offset + nbytes].view(dtype).reshape(shape)
        offset += nbytes
    return arrays


def _packed_parts(parts: Sequence[tuple[str, np.ndarray]], offset: int) -> tuple[list[Any], list[Buffer]]:
    """The header's part list and the payload buffers (zero padding before each part) for ``parts`` placed
    after ``offset`` bytes of images."""
    listed: list[Any] = []
    buffers: list[Buffer] = []
    for name, array in parts:
        array = np.ascontiguousarray(array)
        padding = -offset % PART_ALIGN
        buffers += [bytes(padding), raw_bytes(array)]
        listed.append([name, array.dtype.str, list(array.shape)])
        offset += padding + array.nbytes
    return listed, buffers


# --- encoded batch frames (the images' codecs: .encodings) ---------------------------------------------


def encoded_batch_frame(
    shape: Sequence[int],
    encoded: Sequence[Buffer],
    encoding: str,
    quality: int | None = None,
    header_bytes: int = 0,
    **fields: Any,
) -> list[Buffer]:
    """A batch frame of images already encoded (one buffer each, :func:`encode_image`) in ``encoding``."""
    if len(encoded) != shape[0]:
        raise ValueError(f"{len(encoded)} encoded images for a batch of {shape[0]}")
    codec_fields: dict[str, Any] = {"encoding": encoding, "sizes": [len(image) for image in encoded]}
    if encoding == "zstd":
        codec_fields["filter"] = ZSTD_FILTER
    elif encoding == "jpeg":
        codec_fields["quality"] = JPEG_QUALITY if quality is None else quality
    else:
        raise ValueError(f"not an encoding of encoded frames: {encoding!r}")
    return frame(batch_header(tuple(shape), "uint8", **codec_fields, **fields), list(encoded), header_bytes)
