"""An epoch shard as a stream of batch jobs: decode (through the cache), augment, stack, frame.

Everything that can be refused is refused before the first byte: unknown dataset, a spec that cannot give
one shape for this dataset's images, a crop that does not fit with ``if_smaller: error``, a batch too large.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import numpy as np
from augserve_client.epochs import Batch, EpochRequest, batches_per_shard, sample_seed, shard_batches
from augserve_client.errors import ErrorCode
from augserve_client.wire import Buffer, batch_frame, frame

from . import codecs
from .engine import check_fits
from .errors import ServiceError, limit_exceeded, stream_error_body
from .state import AppState
from .store import Manifest
from .streaming import Job


def output_shape(manifest: Manifest, request: EpochRequest) -> tuple[int, int]:
    """The one (height, width) every sample of this epoch will have, or a 422 explaining why there is none."""
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


def plan(state: AppState, manifest: Manifest, request: EpochRequest) -> tuple[list[Batch], int, tuple[int, int]]:
    """Validate ``request`` against ``manifest``; returns (batches to send, batches in the shard, output shape)."""
    if request.batch_size > state.settings.max_batch_size:
        raise limit_exceeded(
            ErrorCode.BATCH_TOO_LARGE,
            "max_batch_size",
            state.settings.max_batch_size,
            f"batch_size {request.batch_size} asked",
            field="batch_size",
        )
    shape = output_shape(manifest, request)
    total = batches_per_shard(len(manifest.keys), request.shard_count, request.batch_size, request.drop_last)
    return shard_batches(len(manifest.keys), request), total, shape


def jobs(
    state: AppState, manifest: Manifest, request: EpochRequest, batches: list[Batch], shape: tuple[int, int]
) -> Iterator[Job]:
    return (partial(_batch, state, manifest, request, batch, shape) for batch in batches)


def decoded(state: AppState, manifest: Manifest, index: int) -> np.ndarray:
    key = manifest.keys[index]
    return state.cache.get(
        f"{manifest.kind}:{key}",
        lambda: codecs.decode(state.store.read(manifest, index), key, state.settings.max_pixels),
    )


def _batch(
    state: AppState, manifest: Manifest, request: EpochRequest, batch: Batch, shape: tuple[int, int]
) -> list[Buffer]:
    pipeline = state.pipelines.get(request.spec)
    images = np.empty((len(batch.indices), *shape, 3), dtype=np.uint8)
    seeds = [sample_seed(request.seed, request.epoch, int(index)) for index in batch.indices]
    for slot, (index, seed) in enumerate(zip(batch.indices, seeds, strict=True)):
        images[slot] = pipeline(decoded(state, manifest, int(index)), seed).image
    return batch_frame(
        images,
        batch=batch.number,
        indices=batch.indices.tolist(),
        seeds=seeds,
        labels=[manifest.labels[int(index)] for index in batch.indices],
        padding=batch.padding,
    )


def end_frame(sent: int) -> list[Buffer]:
    return frame({"kind": "end", "batches": sent})


def error_frame(error: Exception) -> list[Buffer]:
    return frame({"kind": "error", **stream_error_body(error)})
