"""What operators see at ``/metrics``, in the Prometheus format (prometheus-client).

With several uvicorn workers each process writes its samples under ``PROMETHEUS_MULTIPROC_DIR`` (set by
:func:`augserve.__main__.run_server` before the workers start) and a scrape, whichever worker answers it,
adds them up. Gauges of a process's state (pool queue, cache, memory budget, open streams) are sampled once a
second by each process (:func:`sample_state`), so the sum over processes is current.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

if TYPE_CHECKING:
    from .state import AppState

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _gauge(name: str, documentation: str) -> Gauge:
    return Gauge(name, documentation, multiprocess_mode="livesum")


REQUESTS = Counter("augserve_requests_total", "HTTP requests answered", ["route", "method", "status"])
REQUEST_SECONDS = Histogram(
    "augserve_request_duration_seconds", "time from a request to the end of its response", ["route"], buckets=SECONDS
)
SENT_BYTES = Counter("augserve_sent_bytes_total", "response bytes sent", ["route"])
VARIANTS = Counter("augserve_variants_total", "variants made", ["kind"])  # kind: augment or epoch
DECODE_SECONDS = Histogram("augserve_decode_seconds", "time to decode one image", buckets=SECONDS)
AUGMENT_SECONDS = Histogram("augserve_augment_seconds", "time to augment one job of variants", buckets=SECONDS)
FIRST_BATCH_SECONDS = Histogram(
    "augserve_time_to_first_batch_seconds", "from an epoch request to its first batch sent", buckets=SECONDS
)
KEY_REQUESTS = Counter("augserve_key_requests_total", "requests by API key name", ["key"])
CACHE_HITS = _gauge("augserve_cache_hits", "decoded-image cache hits since start")
CACHE_MISSES = _gauge("augserve_cache_misses", "decoded-image cache misses since start")
CACHE_BYTES = _gauge("augserve_cache_bytes", "bytes held by the decoded-image cache")
POOL_QUEUED = _gauge("augserve_pool_queued_jobs", "jobs waiting for a pool thread")
STREAMS = _gauge("augserve_streams_in_flight", "response streams open")
BUDGET_BYTES = _gauge("augserve_memory_budget_used_bytes", "decoded-upload bytes taken from the memory budget")


def exposition() -> tuple[bytes, str]:
    """The scrape's body and content type: this process's samples, or every process's when there are several."""
    if not MULTIPROCESS:
        return generate_latest(), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


async def sample_state(state: AppState, every: float = 1.0) -> None:
    """Keep this process's state gauges current, until cancelled."""
    while True:
        cache = state.cache.stats()
        CACHE_HITS.set(cache["hits"])
        CACHE_MISSES.set(cache["misses"])
        CACHE_BYTES.set(cache["bytes"])
        POOL_QUEUED.set(state.pool.queued())
        STREAMS.set(state.drain.streams)
        BUDGET_BYTES.set(state.budget.used)
        await asyncio.sleep(every)
