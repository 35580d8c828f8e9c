"""What a running app holds: settings, the compute pool, the dataset store and the caches; one per process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from .cache import DecodedCache
from .engine import PipelineCache
from .settings import Settings
from .store import DatasetStore


@dataclass
class AppState:
    settings: Settings
    executor: ThreadPoolExecutor
    store: DatasetStore
    cache: DecodedCache
    pipelines: PipelineCache = field(default_factory=PipelineCache)


def get_state(request: Request) -> AppState:
    return request.app.state.augserve


State = Annotated[AppState, Depends(get_state)]
