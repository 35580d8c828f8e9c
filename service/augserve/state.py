"""What a running app holds: settings, the compute pool, the dataset store and the caches; one per process.

Plain Python: routes reach it through the FastAPI dependency in :mod:`augserve.routes.deps`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from augserve_client.protocol.wire import Buffer

from .cache import DecodedCache
from .draining import Drain
from .engine import PipelineCache
from .settings import Settings
from .store import DatasetStore
from .streaming import Job, stream_jobs

T = TypeVar("T")


@dataclass
class AppState:
    settings: Settings
    executor: ThreadPoolExecutor
    store: DatasetStore
    cache: DecodedCache
    drain: Drain
    pipelines: PipelineCache = field(default_factory=PipelineCache)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in the compute pool: CPU work and file I/O never run on the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def stream(
        self, jobs: Iterable[Job], trailer: Callable[[], list[Buffer]], on_error: Callable[[Exception], list[Buffer]]
    ) -> AsyncIterator[bytes | memoryview]:
        """A response body computing ``jobs`` in the pool, within this process's window and write size, and
        ended by the drain's deadline when the process shuts down."""
        body = stream_jobs(
            jobs,
            self.executor,
            inflight=self.settings.items_in_flight,
            flush_bytes=self.settings.flush_bytes,
            trailer=trailer,
            on_error=on_error,
            check=self.drain.check_stream,
        )
        return self.drain.track(body)
