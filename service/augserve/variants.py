"""Variants of uploaded images (``POST /v1/augment``): decode every upload, then stream a tar of variants.

Variant (i, v) of a request with seed ``s`` uses ``derive_seed(s, i, v)``, so any call or variant can be
replayed. Every upload is decoded, and checked against the spec's crops, before the first byte is sent: a bad
file fails the request with its own error instead of breaking the stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np
from augserve_client.protocol.seeds import derive_seed, fresh_seed
from augserve_client.protocol.spec import Crop, Spec
from augserve_client.protocol.wire import END_OF_ARCHIVE, ERROR_MEMBER, Buffer, json_bytes, member_stem, tar_member

from . import codecs, metrics
from .engine import Pipeline
from .errors import stream_error_body
from .preflight import check_fits
from .state import AppState, Disconnected

# Variants per job. One job per variant made the event loop wake, await and write once per variant; grouping a
# few (while leaving every thread 4 jobs) costs less server CPU per variant (figures: docs/architecture.md).
# A failure mid-stream already drops results computed but not yet flushed, so grouping changes nothing a caller
# can rely on: the error member still follows the variants that were sent. A job also stops at JOB_PIXELS
# (pixels in plus pixels out, summed over its variants), so that a turn in the fair pool stays short and a
# request for huge variants holds a few of them at a time, not eight.
GROUP_VARIANTS = 8
JOB_PIXELS = 4_000_000
T = TypeVar("T")


@dataclass(frozen=True)
class AugmentRequest:
    """A parsed ``/v1/augment`` request, its limits already checked: uploads as (name, bytes)."""

    spec: Spec
    variants: int
    seed: int | None  # None: a fresh one
    files: list[tuple[str, bytes]]


@dataclass(frozen=True)
class VariantStream:
    """A tar body of ``count`` variants made with ``seed``."""

    body: AsyncIterator[bytes | memoryview]
    seed: int
    count: int


async def augment(state: AppState, request: AugmentRequest, disconnected: Disconnected) -> VariantStream:
    """Decode every upload, then stream ``request.variants`` variants of each as a WebDataset-style tar.

    The decoded images are held until the stream ends: their bytes come out of the process's memory budget
    first (:mod:`augserve.budget`), and decoding stops if the client leaves."""
    seed = fresh_seed() if request.seed is None else request.seed
    owner = object()  # this request's turn in the pool, for its decoding and its variants
    max_pixels = state.settings.max_pixels
    sizes = await state.compute(owner, lambda: [codecs.decoded_bytes(d, n, max_pixels) for n, d in request.files])
    await state.budget.take(sum(sizes))
    try:
        body = await _stream(state, owner, request, seed, disconnected)
    except BaseException:
        await state.budget.give_back(sum(sizes))
        raise
    return VariantStream(state.budget.held_for(sum(sizes), body), seed, len(request.files) * request.variants)


async def _stream(
    state: AppState, owner: Hashable, request: AugmentRequest, seed: int, disconnected: Disconnected
) -> AsyncIterator[bytes | memoryview]:
    images = await _decode_all(state, owner, request.spec, request.files, disconnected)
    items = [
        (index, name, image, variant)
        for index, ((name, _), image) in enumerate(zip(request.files, images, strict=True))
        for variant in range(request.variants)
    ]
    size = max(1, min(GROUP_VARIANTS, len(items) // (4 * state.settings.pool_threads)))
    spec = request.spec
    groups = _groups(items, size, lambda item: _pixels(spec, item[2]))
    jobs = (partial(_variants, state, spec, seed, group) for group in groups)
    return state.stream(owner, jobs, trailer=lambda: [END_OF_ARCHIVE], on_error=_error_member)


def _pixels(spec: Spec, image: np.ndarray) -> int:
    """What making one variant of ``image`` costs, in pixels read and written (the output's at most)."""
    height, width = image.shape[:2]
    sizes = [spec.output.size] if spec.output.size else [op.size for op in spec.ops if isinstance(op, Crop)]
    return height * width + max([height * width, *(h * w for h, w in sizes)])


def _groups(items: list[T], size: int, cost: Callable[[T], int]) -> Iterator[list[T]]:
    """``items`` in order, in groups of at most ``size`` whose costs add up to at most JOB_PIXELS (or one)."""
    group: list[T] = []
    total = 0
    for item in items:
        if group and (len(group) == size or total + cost(item) > JOB_PIXELS):
            yield group
            group, total = [], 0
        group.append(item)
        total += cost(item)
    if group:
        yield group


async def _decode_all(
    state: AppState, owner: Hashable, spec: Spec, files: list[tuple[str, bytes]], disconnected: Disconnected
) -> list[np.ndarray]:
    """Decode every upload in the pool, off the event loop; any bad file fails the request before streaming."""

    def decode_checked(name: str, data: bytes) -> np.ndarray:
        image = codecs.decode(data, name, state.settings.max_pixels)
        check_fits(spec, image.shape[0], image.shape[1], name)
        return image

    return await state.compute_all(owner, [partial(decode_checked, n, d) for n, d in files], disconnected)


def _variants(state: AppState, spec: Spec, seed: int, items: list[tuple[int, str, np.ndarray, int]]) -> list[Buffer]:
    pipeline = state.pipelines.get(spec)  # once per job: the lookup serialises the spec to JSON
    with metrics.AUGMENT_SECONDS.time():
        parts = [
            part
            for index, name, image, variant in items
            for part in _variant(pipeline, spec, seed, index, name, image, variant)
        ]
    metrics.VARIANTS.labels("augment").inc(len(items))
    return parts


def _variant(
    pipeline: Pipeline, spec: Spec, seed: int, index: int, name: str, image: np.ndarray, variant: int
) -> list[Buffer]:
    files = variant_files(pipeline, spec, seed, index, name, image, variant)
    return [part for member, data in files for part in tar_member(member, data)]


def variant_files(
    pipeline: Pipeline, spec: Spec, seed: int, index: int, name: str, image: np.ndarray, variant: int
) -> list[tuple[str, list[Buffer]]]:
    """Variant ``variant`` of image ``index`` as its two files, (name, buffers): the encoded image, then its JSON
    metadata. They are this service's tar members, and what ``augserve augment`` writes without a server."""
    variant_seed = derive_seed(seed, index, variant)
    result = pipeline(image, variant_seed)
    output = spec.output
    stem = member_stem(index, variant)
    meta = {
        "key": stem,
        "image": index,
        "variant": variant,
        "source": name,
        "seed": variant_seed,
        "request_seed": seed,
        "shape": list(result.image.shape),
        "format": output.format,
        "applied": result.applied,
    }
    encoded = codecs.encode(result.image, output.format, output.quality)
    return [
        (f"{stem}.{codecs.EXTENSIONS[output.format]}", encoded),
        (f"{stem}.json", [json_bytes(meta)]),
    ]


def _error_member(error: Exception) -> list[Buffer]:
    return tar_member(ERROR_MEMBER, [json_bytes(stream_error_body(error))])
