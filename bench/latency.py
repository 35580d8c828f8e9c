"""Latency on a warm server: time to the first batch, and per-batch request latency under concurrency.

* First batch: a one-batch epoch request (``end_batch=1``, batch 32) on an open connection, timed from the
  call to the parsed array in hand, a fresh epoch number each trial so nothing is replayed.
* Per batch: 1 or 8 client threads, each with its own connection, each asking again and again for one batch
  of 32 (a different batch each time). With 8 clients on 2 cores a request waits for the others: p50 shows
  the fair share, p99 the tail.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from augserve_client import Client

from .common import SEED, SPEC, Config, median, percentile
from .service import in_parallel
from .serving import CLIENT_TIMEOUT, BenchServer


def one_batch(client: Client, dataset: str, config: Config, epoch: int, batch: int) -> float:
    """Seconds from asking for batch ``batch`` of ``epoch`` to holding its array."""
    start = time.perf_counter()
    stream = client.epoch(
        dataset, SPEC, batch_size=config.batch_size, seed=SEED, epoch=epoch, start_batch=batch, end_batch=batch + 1
    )
    (received,) = list(stream)
    assert received.images.shape[0] == config.batch_size
    return time.perf_counter() - start


def first_batch(server: BenchServer, dataset: str, config: Config) -> dict[str, Any]:
    with Client(server.url, timeout=CLIENT_TIMEOUT) as client:
        one_batch(client, dataset, config, 10_000, 0)  # open the connection, build the pipeline
        trials = [one_batch(client, dataset, config, 10_001 + trial, 0) for trial in range(config.first_batch_trials)]
    return {
        "batch_size": config.batch_size,
        "trials": len(trials),
        "median_ms": round(1e3 * median(trials), 2),
        "min_ms": round(1e3 * min(trials), 2),
        "max_ms": round(1e3 * max(trials), 2),
    }


def concurrent(server: BenchServer, dataset: str, config: Config, clients: int) -> dict[str, Any]:
    batches = max(1, config.samples // config.batch_size)
    numbers = itertools.count(20_000)
    lock = threading.Lock()
    latencies: list[float] = []

    def work(_: int, client: Client) -> int:
        mine = []
        for request in range(config.latency_requests):
            with lock:
                epoch = next(numbers)
            mine.append(one_batch(client, dataset, config, epoch, request % batches))
        with lock:
            latencies.extend(mine)
        return len(mine) * config.batch_size

    connected = [Client(server.url, timeout=CLIENT_TIMEOUT) for _ in range(clients)]
    try:
        for client in connected:
            client.health()
        start = time.perf_counter()
        variants = in_parallel(connected, work)
        wall = time.perf_counter() - start
    finally:
        for client in connected:
            client.close()
    return {
        "clients": clients,
        "requests": len(latencies),
        "p50_ms": round(1e3 * percentile(latencies, 50), 1),
        "p99_ms": round(1e3 * percentile(latencies, 99), 1),
        "max_ms": round(1e3 * max(latencies), 1),
        "variants_per_s": round(variants / wall, 1),
    }


def run(server: BenchServer, dataset: str, config: Config) -> dict[str, Any]:
    return {
        "first_batch": first_batch(server, dataset, config),
        "clients_1": concurrent(server, dataset, config, 1),
        "clients_8": concurrent(server, dataset, config, 8),
    }
