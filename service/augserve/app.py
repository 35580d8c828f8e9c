"""``create_app(settings)``: the one place the service is assembled (tests pass their own settings)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import cv2
from fastapi import FastAPI

from . import http_errors
from .body_limit import BodyLimit
from .cache import DecodedCache
from .routes import augment, datasets, meta
from .settings import Settings
from .state import AppState
from .store import DatasetStore

API_DESCRIPTION = """Image data augmentation as a service. Send images and a spec (reflect, rotate, crop, shift);
receive freshly randomized variants, streamed as they are computed. Every error is JSON with a stable `code`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # Our pool already has one thread per core; OpenCV's own threads on top would only oversubscribe them.
    cv2.setNumThreads(1)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        executor = ThreadPoolExecutor(settings.pool_threads, thread_name_prefix="augserve")
        store = DatasetStore(settings.data_dir, settings.data_root)
        app.state.augserve = AppState(settings, executor, store, DecodedCache(settings.cache_bytes))
        try:
            yield
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="augserve", version="0.1.0", description=API_DESCRIPTION, lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    http_errors.install(app)
    app.include_router(meta.router)
    app.include_router(augment.router)
    app.include_router(datasets.router)
    return app
