"""Variants of uploaded images (``POST /v1/augment``): decode every upload, then stream a tar of variants.

Variant (i, v) of a request with seed ``s`` uses ``derive_seed(s, i, v)``, so any call or variant can be
replayed. Every upload is decoded, and checked against the spec's crops, before the first byte is sent: a bad
file fails the request with its own error instead of breaking the stream. So are masks and annotations, when
a request has them: a mask of the wrong size, or a box off its image, is refused before any variant is made.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
from augserve_client.protocol.seeds import derive_seed, fresh_seed
from augserve_client.protocol.spec import Crop, Output, Spec
from augserve_client.protocol.targets import ImageTargets, mask_member
from augserve_client.protocol.wire import END_OF_ARCHIVE, ERROR_MEMBER, Buffer, json_bytes, member_stem, tar_member

from . import codecs, metrics
from .engine import Pipeline, Targets, Variant
from .errors import stream_error_body
from .preflight import check_fits, check_mask, check_targets
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
    """A parsed ``/v1/augment`` request, its limits already checked: uploads as (name, bytes); masks and
    targets, when given, one per upload in the same order."""

    spec: Spec
    variants: int
    seed: int | None  # None: a fresh one
    files: list[tuple[str, bytes]]
    masks: list[tuple[str, bytes]] | None = None
    targets: list[ImageTargets | None] | None = None

    @property
    def with_targets(self) -> bool:
        return self.masks is not None or self.targets is not None


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
    sizes = await state.compute(owner, lambda: _decoded_sizes(request, max_pixels))
    await state.budget.take(sum(sizes))
    try:
        body = await _stream(state, owner, request, seed, disconnected)
    except BaseException:
        state.budget.give_back(sum(sizes))
        raise
    return VariantStream(state.budget.held_for(sum(sizes), body), seed, len(request.files) * request.variants)


async def _stream(
    state: AppState, owner: Hashable, request: AugmentRequest, seed: int, disconnected: Disconnected
) -> AsyncIterator[bytes | memoryview]:
    decoded = await _decode_all(state, owner, request, disconnected)
    items = [
        (index, name, image, targets, variant)
        for index, ((name, _), (image, targets)) in enumerate(zip(request.files, decoded, strict=True))
        for variant in range(request.variants)
    ]
    size = max(1, min(GROUP_VARIANTS, len(items) // (4 * state.settings.pool_threads)))
    spec = request.spec
    groups = _groups(items, size, lambda item: _pixels(spec, item[2]))
    jobs = (partial(_variants, state, spec, seed, request.with_targets, group) for group in groups)
    return state.stream(owner, jobs, trailer=lambda: [END_OF_ARCHIVE], on_error=_error_member)


def _decoded_sizes(request: AugmentRequest, max_pixels: int) -> list[int]:
    """What decoding the request will hold, from the headers alone: RGB images, one-byte masks."""
    sizes = [codecs.decoded_bytes(data, name, max_pixels) for name, data in request.files]
    for name, data in request.masks or []:
        height, width = codecs.image_size(data, name, max_pixels)
        sizes.append(height * width)
    return sizes


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
    state: AppState, owner: Hashable, request: AugmentRequest, disconnected: Disconnected
) -> list[tuple[np.ndarray, Targets | None]]:
    """Decode every upload (and mask) in the pool, off the event loop, and check its targets against it; any
    bad file or annotation fails the request before streaming."""
    jobs = [partial(_decode_checked, state.settings.max_pixels, request, index) for index in range(len(request.files))]
    return await state.compute_all(owner, jobs, disconnected)


def _decode_checked(max_pixels: int, request: AugmentRequest, index: int) -> tuple[np.ndarray, Targets | None]:
    name, data = request.files[index]
    image = codecs.decode(data, name, max_pixels)
    height, width = image.shape[:2]
    check_fits(request.spec, height, width, name)
    if not request.with_targets:
        return image, None
    mask = None
    if request.masks is not None:
        mask_name, mask_data = request.masks[index]
        mask = codecs.decode_mask(mask_data, mask_name, max_pixels)
        check_mask(mask.shape, height, width, f"masks[{index}]", mask_name, name)
    targets = request.targets[index] if request.targets is not None else None
    check_targets(targets, request.spec.targets, height, width, f"targets[{index}]", name)
    return image, Targets.of(targets, mask)


Item = tuple[int, str, np.ndarray, Targets | None, int]  # image index, name, pixels, targets, variant


def _variants(state: AppState, spec: Spec, seed: int, with_targets: bool, items: list[Item]) -> list[Buffer]:
    pipeline = state.pipelines.get(spec, with_targets)  # once per job: the lookup serialises the spec to JSON
    with metrics.AUGMENT_SECONDS.time():
        parts = [
            part
            for index, name, image, targets, variant in items
            for member, data in variant_files(pipeline, spec, seed, index, name, image, variant, targets)
            for part in tar_member(member, data)
        ]
    metrics.VARIANTS.labels("augment").inc(len(items))
    return parts


def variant_files(
    pipeline: Pipeline,
    spec: Spec,
    seed: int,
    index: int,
    name: str,
    image: np.ndarray,
    variant: int,
    targets: Targets | None = None,
) -> list[tuple[str, list[Buffer]]]:
    """Variant ``variant`` of image ``index`` as its files, (name, buffers): the encoded image, its mask if it
    has one, then its JSON metadata (with the boxes and keypoints that survived). They are this service's tar
    members, and what ``augserve augment`` writes without a server."""
    variant_seed = derive_seed(seed, index, variant)
    result = pipeline(image, variant_seed, targets)
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
    return variant_members(stem, result, output, meta)


def variant_members(
    stem: str, variant: Variant, output: Output, meta: dict[str, Any]
) -> list[tuple[str, list[Buffer]]]:
    """A variant's tar members: its encoded image, its mask if it has one, then ``meta`` with the boxes and
    keypoints that survived (``/v1/augment`` and a replayed sample alike)."""
    files = [
        (f"{stem}.{codecs.EXTENSIONS[output.format]}", codecs.encode(variant.image, output.format, output.quality))
    ]
    if variant.targets is not None:
        meta = {**meta, **variant.targets.described()}
        if variant.targets.mask is not None:
            meta["mask"] = member = mask_member(stem, output.format)
            files.append((member, codecs.encode(variant.targets.mask, member.rsplit(".", 1)[1], output.quality)))
    return [*files, (f"{stem}.json", [json_bytes(meta)])]


def _error_member(error: Exception) -> list[Buffer]:
    return tar_member(ERROR_MEMBER, [json_bytes(stream_error_body(error))])
