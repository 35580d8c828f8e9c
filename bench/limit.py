"""LIMIT: the engine alone, in-process, on pre-decoded images: what the CPU can do with no service around it.

The same ``augserve.engine.Pipeline.image`` call an epoch stream makes, with the same spec and per-sample seeds
(``sample_seed(seed, epoch, index)``). For context, the same work is also timed with the spec written directly
in albumentations (:func:`plain_transform`, what PEER runs), which resamples the whole photo for the rotation
where the engine resamples once, in the crop (see ``augserve.engine.transforms``).

LIMIT_COLD is the same with nothing decoded beforehand: each sample is decoded from its JPEG bytes in memory
(``augserve.codecs.decode``, ``exact``; or ``fast``, at the scale ``augserve.scaled_decode`` picks for its
seed) and then augmented, the decode's CPU timed apart, so the row splits into decode and augment.

Work is split by index modulo the process count, in forked processes that start together on a barrier; the
rate is all variants over the span from the first start to the last finish. OpenCV is held to one thread per
process, as in the service, so "2 processes" means two cores.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import albumentations as A
import cv2
import numpy as np
from augserve.codecs import decode, image_size
from augserve.engine import Pipeline  # imported before forking, so the workers do not each import it
from augserve.jpeg import scaled_size
from augserve.scaled_decode import FULL, eighths_for
from augserve_client.protocol.epochs import sample_seed
from augserve_client.protocol.spec import Spec

from .common import SEED, SPEC, Config, Rate, lone_core, median_rate, quiet, system_busy

MAX_PIXELS = 1 << 40

_IMAGES: list[np.ndarray] = []  # set before forking, inherited copy-on-write by the workers
_BLOBS: list[bytes] = []  # LIMIT_COLD: the JPEG files' bytes, likewise
Augment = Callable[[np.ndarray, int], np.ndarray]
Sample = Callable[[int, int], float]  # (index, seed) -> CPU seconds spent decoding


def plain_transform() -> A.Compose:
    """The spec written directly in albumentations, with the parameters the service compiles it to."""
    linear, constant = cv2.INTER_LINEAR, cv2.BORDER_CONSTANT
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Rotate(limit=(-15, 15), p=0.5, border_mode=constant, fill=0, interpolation=linear),
            A.RandomResizedCrop(size=(224, 224), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation=linear, p=1),
            A.Affine(translate_percent={"x": (-0.1, 0.1), "y": (-0.1, 0.1)}, p=0.5, border_mode=constant, fill=0),
        ]
    )


def _plain() -> Augment:
    transform = plain_transform()

    def augment(image: np.ndarray, seed: int) -> np.ndarray:
        transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
        return transform(image=image)["image"]

    return augment


def _sampler(kind: str) -> Sample:
    """One sample's work for ``kind``: ``engine`` and ``plain`` on pre-decoded images, ``exact`` and ``fast``
    decoding the bytes first (cold)."""
    pipeline = Pipeline(Spec.model_validate(SPEC))
    if kind in ("plain", "engine"):
        return _decoded_already(_plain() if kind == "plain" else pipeline.image)

    def cold(index: int, seed: int) -> float:
        started = time.thread_time()
        image = decode_sample(pipeline, _BLOBS[index], seed, kind)
        spent = time.thread_time() - started
        pipeline.image(image, seed)
        return spent

    return cold


def _decoded_already(augment: Augment) -> Sample:
    def sample(index: int, seed: int) -> float:
        augment(_IMAGES[index], seed)
        return 0.0

    return sample


def decode_sample(pipeline: Pipeline, blob: bytes, seed: int, mode: str) -> np.ndarray:
    """A sample decoded as an epoch stream in decode mode ``mode`` decodes it (``augserve.sources``)."""
    if mode == "exact":
        return decode(blob, "sample.jpg", MAX_PIXELS)
    height, width = image_size(blob, "sample.jpg", MAX_PIXELS)
    eighths = eighths_for(pipeline, seed, (height, width))
    min_size = None if eighths == FULL else scaled_size((height, width), eighths)
    return decode(blob, "sample.jpg", MAX_PIXELS, min_size, fast=True)


def _worker(rank: int, processes: int, passes: int, kind: str, barrier: Any, results: Any) -> None:
    cv2.setNumThreads(1)
    sample = _sampler(kind)
    mine = range(rank, len(_BLOBS if kind in COLD else _IMAGES), processes)
    for index in list(mine)[:4]:  # warm caches and lazy imports outside the timed span
        sample(index, index)
    core = lone_core(os.sched_getaffinity(0))  # pinned: others' CPU on that core is what disturbs this one
    barrier.wait()
    busy, cpu, start = system_busy(core), time.process_time(), time.perf_counter()
    count, decoding = 0, 0.0
    for epoch in range(passes):
        for index in mine:
            decoding += sample(index, sample_seed(SEED, epoch, index))
            count += 1
    results.put((start, time.perf_counter(), count, time.process_time() - cpu, busy, system_busy(core), decoding))


def run_once(processes: int, passes: int, kind: str = "engine") -> Rate:
    context = mp.get_context("fork")
    barrier, results = context.Barrier(processes), context.Queue()
    args = [(rank, processes, passes, kind, barrier, results) for rank in range(processes)]
    workers = [context.Process(target=_worker, args=worker_args) for worker_args in args]
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    start, end = min(r[0] for r in reports), max(r[1] for r in reports)
    engine, count = sum(r[3] for r in reports), sum(r[2] for r in reports)
    # Other load: the machine's busy time from the first start to the last finish, less the engine's own.
    busy = max(r[5] for r in reports) - min(r[4] for r in reports)
    rate = Rate(count, end - start, engine, None, max(0.0, busy - engine))
    if kind in COLD:
        decoding = sum(r[6] for r in reports)
        rate.extra["decode_ms_per_variant"] = round(1e3 * decoding / count, 3)
        rate.extra["augment_ms_per_variant"] = round(1e3 * (engine - decoding) / count, 3)
    return rate


# (name, processes, kind): the engine, PEER's plain albumentations, and LIMIT_COLD's decode + engine.
KINDS = (("processes_1", 1, "engine"), ("processes_2", 2, "engine"), ("plain_processes_2", 2, "plain"))
COLD_KINDS = (("processes_1", 1, "exact"), ("processes_2", 2, "exact"), ("fast_processes_2", 2, "fast"))
COLD = ("exact", "fast")


@contextmanager
def loaded(images: list[np.ndarray] | None = None, blobs: list[bytes] | None = None) -> Iterator[None]:
    """The samples :func:`run_once`'s workers read: set before they fork (inherited copy-on-write), dropped
    after."""
    _IMAGES[:], _BLOBS[:] = images or [], blobs or []
    try:
        yield
    finally:
        _IMAGES.clear()
        _BLOBS.clear()


def windows(config: Config, images: list[np.ndarray]) -> dict[str, list[Rate]]:
    """Timed windows of each kind. The run takes them before and after the service measurements and reports
    the median of both, so a slow spell on a shared machine does not land on one side only."""
    with loaded(images=images):
        return _windows(config, KINDS)


def cold_windows(config: Config, blobs: list[bytes]) -> dict[str, list[Rate]]:
    """LIMIT_COLD's timed windows: every sample decoded from its bytes, then augmented."""
    with loaded(blobs=blobs):
        return _windows(config, COLD_KINDS)


def _windows(config: Config, kinds: tuple[tuple[str, int, str], ...]) -> dict[str, list[Rate]]:
    return {
        name: [quiet(partial(run_once, n, config.passes, kind), config.tries) for _ in range(config.repeats)]
        for name, n, kind in kinds
    }


def summarise(*runs: dict[str, list[Rate]]) -> dict[str, Any]:
    """``client_cpu_s`` here is the engine's own CPU time (there is no client)."""
    return {name: median_rate([rate for run in runs for rate in run[name]]) for name in runs[0]}
