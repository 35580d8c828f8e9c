"""LIMIT: the engine alone, in-process, on pre-decoded images: what the CPU can do with no service around it.

The same ``augserve.engine.Pipeline.image`` call an epoch stream makes, with the same spec and per-sample seeds
(``sample_seed(seed, epoch, index)``). Work is split by index modulo the process count, in forked processes
that start together on a barrier; the rate is all variants over the span from the first start to the last
finish. OpenCV is held to one thread per process, as in the service, so "2 processes" means two cores.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from functools import partial
from typing import Any

import cv2
import numpy as np
from augserve.engine import Pipeline  # imported before forking, so the workers do not each import it
from augserve_client.epochs import sample_seed
from augserve_client.spec import Spec

from .common import SEED, SPEC, Config, Rate, median_rate, quiet, system_busy

_IMAGES: list[np.ndarray] = []  # set before forking, inherited copy-on-write by the workers


def _worker(rank: int, processes: int, passes: int, barrier: Any, results: Any) -> None:
    cv2.setNumThreads(1)
    pipeline = Pipeline(Spec.model_validate(SPEC))
    mine = range(rank, len(_IMAGES), processes)
    for index in list(mine)[:4]:  # warm caches and lazy imports outside the timed span
        pipeline.image(_IMAGES[index], index)
    barrier.wait()
    busy, cpu, start = system_busy(), time.process_time(), time.perf_counter()
    count = 0
    for epoch in range(passes):
        for index in mine:
            pipeline.image(_IMAGES[index], sample_seed(SEED, epoch, index))
            count += 1
    results.put((start, time.perf_counter(), count, time.process_time() - cpu, busy, system_busy()))


def run_once(processes: int, passes: int) -> Rate:
    context = mp.get_context("fork")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_worker, args=(r, processes, passes, barrier, results)) for r in range(processes)]
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


def windows(config: Config, images: list[np.ndarray]) -> dict[int, list[Rate]]:
    """Timed windows with 1 and 2 processes. The run takes them before and after the service measurements
    and reports the median of both, so a slow spell on a shared machine does not land on one side only."""
    _IMAGES[:] = images
    try:
        return {
            n: [quiet(partial(run_once, n, config.passes), config.tries) for _ in range(config.repeats)] for n in (1, 2)
        }
    finally:
        _IMAGES.clear()


def summarise(*runs: dict[int, list[Rate]]) -> dict[str, Any]:
    """``client_cpu_s`` here is the engine's own CPU time (there is no client)."""
    return {f"processes_{n}": median_rate([rate for run in runs for rate in run[n]]) for n in (1, 2)}
