"""``create_app(settings)``: the one place the service is assembled (tests pass their own settings)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import cv2
from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline

from . import http_errors, logs, metrics
from .body_limit import BodyLimit
from .budget import MemoryBudget
from .cache import DecodedCache
from .draining import Drain
from .fair_pool import FairPool
from .keys import KeyRing, StreamQuota
from .request_log import RequestLog
from .routes import augment, datasets, meta, playground
from .routes.deps import admit_work
from .routes.responses import errors
from .settings import Settings
from .state import AppState
from .store import DatasetStore

log = logging.getLogger("augserve")
API_DESCRIPTION = """Image data augmentation as a service. Send images and a spec (reflect, rotate, crop, shift);
receive freshly randomized variants, streamed as they are computed. Every error is JSON with a stable `code`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logs.configure(settings.log_level, settings.log_format)
    # Our pool already has one thread per core; OpenCV's own threads on top would only oversubscribe them.
    cv2.setNumThreads(1)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = FairPool(settings.pool_threads)
        store = DatasetStore(settings.data_dir, settings.data_root)
        drain = Drain(settings.drain_seconds)
        budget = MemoryBudget(
            settings.memory_budget_bytes, settings.max_request_decoded_bytes, settings.budget_wait_seconds
        )
        keys, quota = KeyRing(settings.keys_file), StreamQuota(settings.max_streams_per_key)
        cache = DecodedCache(settings.cache_bytes)
        app.state.augserve = AppState(settings, pool, store, cache, drain, budget, keys, quota)
        _warn_if_open(settings, keys)
        _drain_on_sigterm(drain)
        sampler = asyncio.create_task(metrics.sample_state(app.state.augserve))
        try:
            yield
        finally:
            sampler.cancel()
            pool.shutdown()

    # FastAPIOffline: FastAPI with /docs and /redoc served from the package's own copies of Swagger UI and ReDoc.
    app = FastAPIOffline(title="augserve", version="0.1.0", description=API_DESCRIPTION, lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestLog)  # outermost: it sees every answer, the body limit's too
    http_errors.install(app)
    app.include_router(meta.router)
    app.include_router(playground.router)
    # Every work route may answer these (keys, roles, drain, validation); streams and uploads add their own.
    work_errors = errors(401, 403, 422, 503)
    app.include_router(datasets.router, dependencies=[Depends(admit_work)], responses=work_errors)
    augment_errors = {**work_errors, **errors(413, 415, 429)}
    app.include_router(augment.router, dependencies=[Depends(admit_work)], responses=augment_errors)
    _declare_limits(app, settings)
    return app


def _declare_limits(app: FastAPI, settings: Settings) -> None:
    """The OpenAPI schema, built once on first use, with this server's own limits where fields have them."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            augment.declare_limits(build(), settings)
        return build()

    app.openapi = openapi  # type: ignore[method-assign]


def _warn_if_open(settings: Settings, keys: KeyRing) -> None:
    """Anyone who reaches a server without keys may read, register and delete every dataset: fine on loopback
    or behind a private network's proxy, worth a loud line anywhere else."""
    if not keys.enabled and not _is_loopback(settings.host):
        log.warning(
            "augserve listens on %s without API keys: anyone who reaches it may read, register and delete any "
            "dataset. Set AUGSERVE_KEYS_FILE (see augserve.keys) unless a private network guards it.",
            settings.host,
        )


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def _drain_on_sigterm(drain: Drain) -> None:
    """Put the drain in front of the server's own SIGTERM handling (uvicorn's, installed before the app
    starts): the first SIGTERM drains, then hands over; a second one hands over at once."""
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous) or threading.current_thread() is not threading.main_thread():
        return  # not run by a server that handles signals (a test client, an embedding)
    loop = asyncio.get_running_loop()

    def handler(signum: int, frame: FrameType | None) -> None:
        if drain.started:
            previous(signum, frame)
            return
        loop.call_soon_threadsafe(lambda: loop.create_task(drain.run(lambda: previous(signum, frame))))

    signal.signal(signal.SIGTERM, handler)
