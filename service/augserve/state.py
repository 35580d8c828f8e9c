"""What a running app holds: settings, the compute pool, the dataset store and the caches; one per process.

Two places run work off the event loop: :meth:`AppState.compute` (decoding, augmenting, planning: the fair
pool, in turns per owner) and :meth:`AppState.io` (small metadata reads and writes: Python's default thread
pool), so listing datasets never waits behind someone's epoch. Plain Python: routes reach it through the
FastAPI dependency in :mod:`augserve.routes.deps`."""

from __future__ import annotations

import asyncio
from asyncio import FIRST_EXCEPTION
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from augserve_client.protocol.errors import ErrorCode
from augserve_client.protocol.wire import Buffer

from .budget import MemoryBudget
from .cache import DecodedCache
from .draining import Drain
from .engine import PipelineCache
from .errors import ServiceError
from .fair_pool import FairPool
from .keys import KeyRing, StreamQuota
from .settings import Settings
from .store import DatasetStore
from .streaming import Job, stream_jobs

T = TypeVar("T")
Disconnected = Callable[[], Awaitable[bool]]
POLL_SECONDS = 0.25  # how often work done for a request checks that its client is still there


@dataclass
class AppState:
    settings: Settings
    pool: FairPool
    store: DatasetStore
    cache: DecodedCache
    drain: Drain
    budget: MemoryBudget
    keys: KeyRing
    quota: StreamQuota
    pipelines: PipelineCache = field(default_factory=PipelineCache)

    async def compute(self, owner: Hashable, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in the compute pool, in ``owner``'s turn (one request or stream: see FairPool)."""
        return await asyncio.wrap_future(self.pool.submit(owner, partial(function, *args)))

    async def compute_all(
        self, owner: Hashable, calls: list[Callable[[], T]], disconnected: Disconnected | None = None
    ) -> list[T]:
        """Every call in ``owner``'s turns of the pool, results in order. The first failure, or the client
        leaving (``disconnected()``, polled while they run), cancels every call not yet started."""
        futures = [asyncio.wrap_future(self.pool.submit(owner, call)) for call in calls]
        try:
            pending: set[asyncio.Future[T]] = set(futures)
            while pending:
                done, pending = await asyncio.wait(pending, timeout=POLL_SECONDS, return_when=FIRST_EXCEPTION)
                for future in done:
                    future.result()  # raises the failure
                if pending and disconnected is not None and await disconnected():
                    raise ServiceError(ErrorCode.CLIENT_CLOSED, "the client left before its work was done")
            return [future.result() for future in futures]
        finally:
            for future in futures:
                future.cancel()

    async def io(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)``, a small read or write of the store, off the event loop and off the compute pool."""
        return await asyncio.to_thread(function, *args)

    def stream(
        self,
        owner: Hashable,
        jobs: Iterable[Job],
        trailer: Callable[[], list[Buffer]],
        on_error: Callable[[Exception], list[Buffer]],
    ) -> AsyncIterator[bytes | memoryview]:
        """A response body computing ``jobs`` in ``owner``'s turns of the pool, within this process's window and
        write size, and ended by the drain's deadline when the process shuts down."""
        body = stream_jobs(
            jobs,
            partial(self.pool.submit, owner),
            inflight=self.settings.items_in_flight,
            ahead_bytes=self.settings.ahead_bytes,
            flush_bytes=self.settings.flush_bytes,
            trailer=trailer,
            on_error=on_error,
            check=self.drain.check_stream,
        )
        return self.drain.track(body)
