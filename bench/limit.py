"""LIMIT: the engine alone, in-process, on pre-decoded images: what the CPU can do with no service around it.

The same ``augserve.engine.Pipeline.image`` call an epoch stream makes, with the same spec and per-sample seeds
(``sample_seed(seed, epoch, index)``). For context, the same work is also timed with the spec written directly
in albumentations (:func:`plain_transform`, what PEER runs), which resamples the whole photo for the rotation
where the engine resamples once, in the crop (see ``augserve.engine.transforms``).

Work is split by index modulo the process count, in forked processes that start together on a barrier; the
rate is all variants over the span from the first start to the last finish. OpenCV is held to one thread per
process, as in the service, so "2 processes" means two cores.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import albumentations as A
import cv2
import numpy as np
from augserve.engine import Pipeline  # imported before forking, so the workers do not each import it
from augserve_client.protocol.epochs import sample_seed
from augserve_client.protocol.spec import Spec

from .common import SEED, SPEC, Config, Rate, median_rate, quiet, system_busy

_IMAGES: list[np.ndarray] = []  # set before forking, inherited copy-on-write by the workers
Augment = Callable[[np.ndarray, int], np.ndarray]


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


def _augmenter(plain: bool) -> Augment:
    if not plain:
        return Pipeline(Spec.model_validate(SPEC)).image
    transform = plain_transform()

    def augment(image: np.ndarray, seed: int) -> np.ndarray:
        transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
        return transform(image=image)["image"]

    return augment


def _worker(rank: int, processes: int, passes: int, plain: bool, barrier: Any, results: Any) -> None:
    cv2.setNumThreads(1)
    augment = _augmenter(plain)
    mine = range(rank, len(_IMAGES), processes)
    for index in list(mine)[:4]:  # warm caches and lazy imports outside the timed span
        augment(_IMAGES[index], index)
    barrier.wait()
    busy, cpu, start = system_busy(), time.process_time(), time.perf_counter()
    count = 0
    for epoch in range(passes):
        for index in mine:
            augment(_IMAGES[index], sample_seed(SEED, epoch, index))
            count += 1
    results.put((start, time.perf_counter(), count, time.process_time() - cpu, busy, system_busy()))


def run_once(processes: int, passes: int, plain: bool = False) -> Rate:
    context = mp.get_context("fork")
    barrier, results = context.Barrier(processes), context.Queue()
    args = [(rank, processes, passes, plain, barrier, results) for rank in range(processes)]
    workers = [context.Process(target=_worker, args=worker_args) for worker_args in args]
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    start, end = min(r[0] for r in reports), max(r[1] for r in reports)
    engine = sum(r[3] for r in reports)
    # Other load: the machine's busy time from the first start to the last finish, less the engine's own.
    busy = max(r[5] for r in reports) - min(r[4] for r in reports)
    return Rate(sum(r[2] for r in reports), end - start, engine, None, max(0.0, busy - engine))


# (name, processes, plain albumentations instead of the engine)
KINDS = (("processes_1", 1, False), ("processes_2", 2, False), ("plain_processes_2", 2, True))


def windows(config: Config, images: list[np.ndarray]) -> dict[str, list[Rate]]:
    """Timed windows of each kind. The run takes them before and after the service measurements and reports
    the median of both, so a slow spell on a shared machine does not land on one side only."""
    _IMAGES[:] = images
    try:
        return {
            name: [quiet(partial(run_once, n, config.passes, plain), config.tries) for _ in range(config.repeats)]
            for name, n, plain in KINDS
        }
    finally:
        _IMAGES.clear()


def summarise(*runs: dict[str, list[Rate]]) -> dict[str, Any]:
    """``client_cpu_s`` here is the engine's own CPU time (there is no client)."""
    return {name: median_rate([rate for run in runs for rate in run[name]]) for name, _, _ in KINDS}
