"""An epoch shard as a stream of batch jobs: decode (through the cache), augment, stack, frame.

Everything that can be refused is refused before the first byte: unknown dataset, a spec that cannot give
one shape for this dataset's images, a crop that does not fit with ``if_smaller: error``, a batch too large.

A batch is one job, except the first batch of a stream: it is split into parts that the pool computes at once,
so it arrives in a fraction of its compute time (a trainer waits for it). Later batches are computed ahead
while earlier ones are sent, so their latency is hidden, and whole-batch jobs keep the per-job overhead low.

A raw stream's length is fixed by the plan, so the response carries a ``Content-Length``: each frame header is
padded to the size of the widest header its batch could have (largest index, 63-bit seeds, widest label).
Without a length uvicorn sends chunks, and it joins each chunk with its size line into a new bytes object on
the event loop: a copy of every batch. With one, the pixels go from the batch array to the socket untouched.

An encoded stream (``zstd``, ``jpeg``: the request's ``encoding``) cannot know its length before it is
computed, so it is sent in chunks, and a failure needs no room reserved for its error frame. Each job encodes
the variants it makes, one by one as they come out of the engine (so the parts of a first batch encode in
parallel, and a variant is encoded while it is still in the cache); the batch's last job joins the frame into
one buffer, off the event loop, which then copies only the encoded bytes into its chunk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Hashable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from typing import Any

import numpy as np
from augserve_client.protocol.encodings import codec, encode_image
from augserve_client.protocol.epochs import Batch, EpochRequest, sample_seed, shard_batch_count, shard_batches
from augserve_client.protocol.errors import ErrorCode
from augserve_client.protocol.seeds import SEED_MAX
from augserve_client.protocol.spec import Spec
from augserve_client.protocol.targets import BatchTargets
from augserve_client.protocol.wire import (
    Buffer,
    batch_frame,
    batch_header,
    encoded_batch_frame,
    frame,
    frame_size,
    header_size,
)

from . import metrics
from .engine import Targets
from .errors import ServiceError, limit_exceeded, stream_error_body
from .preflight import check_fits, check_spec
from .sources import sample_targets, variant_source
from .state import AppState
from .store import Manifest
from .streaming import Job

# Successful shape checks, by (dataset name, spec, distinct image sizes); failures are checked again each time.
_SHAPES: dict[tuple[str, str, frozenset[tuple[int, int]]], tuple[int, int]] = {}
MAX_SHAPES = 256


@dataclass(frozen=True)
class Plan:
    """What an epoch request will send, fixed before its first sample is drawn."""

    batches: list[Batch]  # the batches to send
    total: int  # batches in the whole shard
    shape: tuple[int, int]  # (height, width) of every variant
    header_bytes: dict[int, int]  # batch length -> the padded header size of its frames (raw streams)
    encoding: str = "raw"
    quality: int | None = None  # jpeg
    targets: bool = False  # the frames carry the dataset's masks, boxes and keypoints

    def content_length(self) -> int | None:
        """The stream's exact size; None for an encoded stream, whose size is known only once it is computed, and
        for a stream with targets (how many boxes survive is known only then)."""
        if self.encoding != "raw" or self.targets:
            return None
        frames = sum(self._frame_size(len(batch.indices)) for batch in self.batches)
        return frames + _size(end_frame(len(self.batches)))

    def error_room(self) -> int | None:
        """The fewest bytes of the stream a failure can leave: a failed batch's frame is never sent (a job
        returns whole frames), so at least the smallest frame and the end frame remain. An error frame this
        size or smaller always fits, whole, into the stream's Content-Length. None (any size) without one."""
        if self.content_length() is None:
            return None
        smallest = min(map(self._frame_size, self.header_bytes), default=0)  # keys: the batch lengths there are
        return smallest + _size(end_frame(len(self.batches)))

    def _frame_size(self, count: int) -> int:
        return frame_size(self.header_bytes[count], _nbytes(count, self.shape))


def _size(buffers: list[Buffer]) -> int:
    return sum(len(buffer) for buffer in buffers)


def _nbytes(count: int, shape: tuple[int, int]) -> int:
    """Payload bytes of a batch of ``count`` RGB variants."""
    return count * shape[0] * shape[1] * 3


def output_shape(manifest: Manifest, request: EpochRequest) -> tuple[int, int]:
    """The one (height, width) every sample of this epoch will have, or a 422 explaining why there is none.

    Checking every distinct size runs on the event loop, in front of the first batch, and every epoch of every
    worker asks again: the answer is remembered (it depends on nothing else)."""
    key = (manifest.name, request.spec.model_dump_json(), frozenset(manifest.sizes))
    shape = _SHAPES.get(key)
    if shape is None:
        shape = _check_shapes(manifest, request)
        if len(_SHAPES) >= MAX_SHAPES:
            _SHAPES.clear()
        _SHAPES[key] = shape
    return shape


def _check_shapes(manifest: Manifest, request: EpochRequest) -> tuple[int, int]:
    shapes: set[tuple[int, int]] = set()
    for height, width in set(manifest.sizes):
        check_fits(request.spec, height, width, f"an image of {manifest.name!r}")
        shapes |= request.spec.shapes_for(height, width)
    if len(shapes) != 1:
        listed = ", ".join(f"{h}x{w}" for h, w in sorted(shapes)[:5])
        raise ServiceError(
            ErrorCode.MIXED_SHAPES,
            f"this spec gives variants of {len(shapes)} shapes (HxW: {listed}) for dataset {manifest.name!r}, "
            "but a batch needs one: add output.size, or a crop with p=1",
            field="spec.output.size",
        )
    return shapes.pop()


@dataclass(frozen=True)
class EpochStream:
    """A planned shard's body, and what its response headers announce."""

    body: AsyncIterator[bytes | memoryview]
    plan: Plan
    cache: dict[str, int]  # the decoded cache's statistics when the stream started


def open_epoch(state: AppState, owner: Hashable, manifest: Manifest, request: EpochRequest) -> EpochStream:
    """Plan ``request`` (refusing what cannot be served) and start computing its batches in the pool.

    Planning is O(dataset) (the epoch's order), so it runs in the pool too, never on the event loop."""
    started = time.monotonic()
    planned = plan(state, manifest, request)
    body = state.stream(
        owner,
        jobs(state, manifest, request, planned),
        trailer=lambda: end_frame(len(planned.batches)),
        on_error=partial(error_frame, room=planned.error_room()),  # room None: an encoded stream has no length
    )
    return EpochStream(_first_batch_timed(body, started), planned, state.cache.stats())


async def _first_batch_timed(
    body: AsyncIterator[bytes | memoryview], started: float
) -> AsyncIterator[bytes | memoryview]:
    """``body``, with the time from the request to its first bytes (the first batch) in the metrics."""
    first = True
    async for chunk in body:
        if first:
            metrics.FIRST_BATCH_SECONDS.observe(time.monotonic() - started)
            first = False
        yield chunk


def plan(state: AppState, manifest: Manifest, request: EpochRequest) -> Plan:
    """Validate ``request`` against ``manifest`` and fix what the stream will send."""
    if request.batch_size > state.settings.max_batch_size:
        raise limit_exceeded(
            ErrorCode.BATCH_TOO_LARGE,
            "max_batch_size",
            state.settings.max_batch_size,
            f"batch_size {request.batch_size} asked",
            field="batch_size",
        )
    check_spec(request.spec, state.settings.max_pixels)
    shape = output_shape(manifest, request)
    count = len(manifest.keys)
    _check_split(request, count)
    total = shard_batch_count(count, request)
    if request.start_batch > total:  # 409 like every refusal that depends on what the dataset holds now
        message = f"start_batch {request.start_batch} is past the shard's last batch ({total} batches)"
        raise ServiceError(ErrorCode.CONFLICT, message, field="start_batch")
    batches = shard_batches(count, request)
    if manifest.has_targets:
        if request.encoding != "raw":
            message = f"dataset {manifest.name!r} has targets, whose batches travel raw: encoding must be 'raw'"
            raise ServiceError(ErrorCode.CONFLICT, message, field="encoding")
        return Plan(batches, total, shape, {}, targets=True)
    if request.encoding != "raw":
        codec(request.encoding)  # a server without the codec fails here, before the first byte
        return Plan(batches, total, shape, {}, request.encoding, request.quality)
    return Plan(batches, total, shape, _header_bytes(manifest, batches, shape))


def _check_split(request: EpochRequest, count: int) -> None:
    """A shard holds at least one sample of the dataset: more shards than samples would only repeat padding,
    and a client could otherwise make the server plan an epoch of any size it likes."""
    if request.shard_count > count:
        raise ServiceError(
            ErrorCode.CONFLICT,
            f"shard_count {request.shard_count} is more than the {count} samples of the dataset; "
            "each shard needs at least one",
            field="shard_count",
        )


def _header_bytes(manifest: Manifest, batches: list[Batch], shape: tuple[int, int]) -> dict[int, int]:
    """For each batch length, the size of the widest header such a batch can have: every field at its widest
    value (the last index, 63-bit seeds, the widest label, the last batch number, all padding)."""
    if not batches:
        return {}
    label = max(min(manifest.labels), max(manifest.labels), key=lambda value: len(str(value)))
    sizes = {}
    number, index = batches[-1].number, len(manifest.keys) - 1
    for count in {len(batch.indices) for batch in batches}:
        fields = _fields(number, [index] * count, [SEED_MAX] * count, [label] * count, count)
        sizes[count] = header_size(batch_header((count, *shape, 3), "uint8", **fields), _nbytes(count, shape))
    return sizes


def _fields(number: int, indices: list[int], seeds: list[int], labels: list[int], padding: int) -> dict[str, Any]:
    """A batch frame's own header fields (the wire adds kind, shape, dtype and nbytes)."""
    return {"batch": number, "indices": indices, "seeds": seeds, "labels": labels, "padding": padding}


def jobs(state: AppState, manifest: Manifest, request: EpochRequest, plan: Plan) -> Iterator[Job]:
    for number, batch in enumerate(plan.batches):
        indices = batch.indices.tolist()
        raw = plan.encoding == "raw"
        parts = 2 * state.settings.pool_threads if number == 0 else 1  # 2 per thread: image sizes vary
        bounds = np.linspace(0, len(indices), parts + 1).astype(int)
        ranges = [(int(start), int(stop)) for start, stop in pairwise(bounds[:-1])]
        work = _BatchWork(
            state,
            manifest,
            request.spec,
            batch,
            indices,
            [sample_seed(request.seed, request.epoch, index) for index in indices],
            np.empty((len(indices), *plan.shape, 3), dtype=np.uint8) if raw else None,
            plan.shape,
            plan.encoding,
            plan.quality,
            [] if raw else [b""] * len(indices),
            None if raw and not plan.targets else _Parts(ranges),
            [None] * len(indices) if plan.targets else None,
        )
        for start, stop in ranges:
            yield partial(work.fill, start, stop)
        yield partial(work.frame, int(bounds[-2]), plan.header_bytes.get(len(indices), 0))


@dataclass(frozen=True)
class _BatchWork:
    """One batch's samples, their seeds (derived once), and what its parts fill: the batch's array (raw), or
    each sample's encoded bytes (an encoded stream, which has no array)."""

    state: AppState
    manifest: Manifest
    spec: Spec
    batch: Batch
    indices: list[int]
    seeds: list[int]
    images: np.ndarray | None
    shape: tuple[int, int]  # (height, width) of every variant
    encoding: str
    quality: int | None
    encoded: list[bytes]
    parts: _Parts | None  # encoded or with targets: which job computes which part (see _Parts)
    moved: list[Targets | None] | None  # with targets: each sample's, as the ops left them

    def fill(self, start: int, stop: int) -> list[Buffer]:
        """Augment samples ``start:stop`` into their slots of ``images`` or ``encoded``; returns nothing to send.

        A stream sends job results in job order, so the frame (which views ``images``, returned by the batch's
        last job) goes out only after every part has been awaited, even if the last job finished first. An
        encoded frame copies the parts' bytes when it is made instead: see :class:`_Parts`."""
        if self.parts is None:
            self._fill(start, stop)
        elif self.parts.take((start, stop)):
            try:
                self._fill(start, stop)
            finally:
                self.parts.finish((start, stop))
        return []

    def _fill(self, start: int, stop: int) -> None:
        pipeline = self.state.pipelines.get(self.spec, self.moved is not None)
        with metrics.AUGMENT_SECONDS.time():
            for slot in range(start, stop):
                index, seed = self.indices[slot], self.seeds[slot]
                source = variant_source(self.state, self.manifest, pipeline, index, seed)
                if self.moved is None:
                    variant = pipeline.image(source, seed)
                else:
                    targets = sample_targets(self.state, self.manifest, index, self.spec.targets)
                    variant, self.moved[slot] = pipeline.with_moved(source, seed, targets)
                if self.images is not None:
                    self.images[slot] = variant
                else:
                    self.encoded[slot] = encode_image(variant, self.encoding, self.quality)
        metrics.VARIANTS.labels("epoch").inc(stop - start)

    def frame(self, start: int, header_bytes: int) -> list[Buffer]:
        """Augment the samples from ``start`` on (the earlier ones came from parts) and frame the whole batch."""
        self._fill(start, len(self.indices))
        labels = [self.manifest.labels[index] for index in self.indices]
        fields = _fields(self.batch.number, self.indices, self.seeds, labels, self.batch.padding)
        if self.parts is None:
            return batch_frame(self.images, header_bytes, **fields)
        for part in self.parts.ranges:
            self.fill(*part)  # a part no job has taken yet is computed here
            self.parts.wait(part)
        if not all(self.encoded) or (self.moved is not None and not all(self.moved)):
            raise RuntimeError("a part of this batch failed")  # the stream ends with its error before this frame
        if self.images is not None:  # raw, with targets: their arrays are made now, from every part's
            return batch_frame(self.images, header_bytes, parts=self._target_parts(), **fields)
        shape = (len(self.indices), *self.shape, 3)
        return [b"".join(encoded_batch_frame(shape, self.encoded, self.encoding, self.quality, **fields))]

    def _target_parts(self) -> list[tuple[str, np.ndarray]]:
        """The batch's targets as a frame's parts: those kinds the dataset has, for every sample."""
        if self.moved is None:
            return []
        moved = [targets for targets in self.moved if targets is not None]
        kinds = self.manifest.target_kinds
        point_labels = any(targets.keypoint_labels is not None for targets in moved)
        batch = BatchTargets(
            masks=np.stack([targets.mask for targets in moved]) if "masks" in kinds else None,
            boxes=[targets.boxes for targets in moved] if "boxes" in kinds else None,
            box_labels=[np.asarray(targets.labels) for targets in moved] if "boxes" in kinds else None,
            keypoints=[targets.keypoints for targets in moved] if "keypoints" in kinds else None,
            keypoint_labels=[_point_labels(targets) for targets in moved] if point_labels else None,
        )
        return batch.parts()


def _point_labels(targets: Targets) -> np.ndarray:
    """A sample's keypoint labels; -1 for each of its keypoints when it has none (others in the batch do)."""
    labels = targets.keypoint_labels
    return np.asarray(labels if labels is not None else [-1] * len(targets.keypoints), dtype=np.int64)


class _Parts:
    """The parts of an encoded batch, or of one with targets, that jobs before its frame job compute.

    The frame must hold every part's bytes (or targets) when it is made, but the pool may run the frame job while
    the part jobs still run, and once a stream is abandoned a part job may be cancelled and never run. So each part is
    taken by the first job that comes to it: the frame job computes the parts no job has taken, and waits only
    for parts that are running, which end (in failure too)."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges = ranges  # (start, stop); a batch smaller than its number of parts has empty ones
        self._lock = threading.Lock()
        self._taken: set[tuple[int, int]] = set()
        self._done = {part: threading.Event() for part in ranges}

    def take(self, part: tuple[int, int]) -> bool:
        """True for the first job to ask for ``part``: it computes it."""
        with self._lock:
            first = part not in self._taken
            self._taken.add(part)
        return first

    def finish(self, part: tuple[int, int]) -> None:
        self._done[part].set()

    def wait(self, part: tuple[int, int]) -> None:
        self._done[part].wait()


def end_frame(sent: int) -> list[Buffer]:
    return frame({"kind": "end", "batches": sent})


def error_frame(error: Exception, room: int | None = None) -> list[Buffer]:
    """The frame of a failure after the stream started. Within ``room`` bytes when given: a body that does not
    fit keeps only its code and as much of its message as fits, so the client still reads a whole, typed
    error (a cut frame would read as a broken stream, which the client retries)."""
    body = {"kind": "error", **stream_error_body(error)}
    if room is None or _size(frame(body)) <= room:
        return frame(body)
    short = {"kind": "error", "code": body["code"], "message": body["message"]}
    overflow = _size(frame(short)) - room  # every character takes at least one byte of JSON
    short["message"] = short["message"][: max(0, len(short["message"]) - overflow)]
    return frame(short)
