"""Every knob of the service, in one place, read from ``AUGSERVE_*`` environment variables.

Defaults are safe for a laptop and for a container: loopback only, bounded memory, bounded uploads.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1 << 20


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUGSERVE_", extra="forbid")

    host: str = Field("127.0.0.1", description="address to bind; 0.0.0.0 only inside a container")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes")
    threads: int = Field(0, ge=0, le=256, description="augmentation threads per worker; 0: cores / workers")
    log_level: str = Field("info", description="debug, info, warning or error: the service's and uvicorn's logs")
    log_format: Literal["text", "json"] = Field("text", description="log lines as text, or one JSON object each")
    metrics_need_key: bool = Field(False, description="with a keys file, /metrics too needs a key (any role)")

    keys_file: Path | None = Field(
        None, description="API keys (hashes, names, roles: see augserve.keys); unset: anyone who reaches the port"
    )
    max_streams_per_key: int = Field(0, ge=0, description="streams one key may have open at once; 0: no limit")
    data_dir: Path = Field(Path("data"), description="writable store for uploaded datasets (shared by replicas)")
    blob_grace_seconds: float = Field(
        3600.0, ge=0, description="deleting a dataset reclaims blobs no dataset lists, untouched this long"
    )
    data_root: Path | None = Field(None, description="read-only root for server-side folder datasets")

    max_request_bytes: int = Field(256 * MiB, gt=0, description="bytes in one request body")
    max_header_bytes: int = Field(64 * 1024, gt=0, description="bytes of a request's line and headers (431 beyond)")
    header_timeout: float = Field(10.0, gt=0, description="seconds a request's headers may take to arrive (408)")
    body_min_rate: int = Field(1024, ge=0, description="bytes per second a request body must arrive at, at least")
    body_grace_seconds: float = Field(10.0, ge=0, description="seconds of a body before its rate is judged")
    max_file_bytes: int = Field(64 * MiB, gt=0, description="bytes in one uploaded file")
    max_pixels: int = Field(40_000_000, gt=0, description="pixels in one decoded image (decompression-bomb guard)")
    max_images: int = Field(256, gt=0, description="images in one /v1/augment request")
    max_variants: int = Field(64, gt=0, description="variants per image in one /v1/augment request")
    max_batch_size: int = Field(1024, gt=0, description="samples in one streamed batch")
    max_upload_files: int = Field(1000, gt=0, description="files in one dataset upload request")
    max_dataset_items: int = Field(
        100_000, gt=0, description="items in one dataset (each file's header is read when it is registered)"
    )
    max_annotation_bytes: int = Field(
        256 * MiB,
        gt=0,
        description="size of a COCO annotation file a folder dataset may register (it is parsed whole: "
        "several times its size in memory)",
    )

    max_request_decoded_bytes: int = Field(
        1024 * MiB, gt=0, description="bytes the images of one /v1/augment request may decode to (413 beyond)"
    )
    memory_budget_bytes: int = Field(
        2048 * MiB, gt=0, description="bytes of decoded uploads all requests of a process may hold at once"
    )
    budget_wait_seconds: float = Field(
        30.0, ge=0, le=600, description="how long a request waits for the memory budget before a 503"
    )
    cache_bytes: int = Field(1024 * MiB, ge=0, description="decoded-image cache per process")
    disk_cache_bytes: int = Field(
        0,
        ge=0,
        description="bytes of decoded images kept on local disk, memory-mapped and shared by a replica's workers "
        "(a second cache tier, surviving restarts; checked by hash on every read); 0: off",
    )
    disk_cache_dir: Path | None = Field(
        None, description="where the disk tier lives (a local disk); unset: decoded/ under data_dir"
    )
    decode: Literal["exact", "fast"] = Field(
        "exact",
        description="epoch streams: exact decodes JPEGs to Pillow's pixels; fast uses libjpeg-turbo's fast IDCT "
        "and upsampling, and decodes at 1/2, 1/4 or 1/8 scale when the variant's crop window keeps the output's "
        "resolution (not bit-identical to exact; a seed still gives the same bytes within the mode)",
    )
    inflight: int = Field(0, ge=0, le=256, description="work items computed ahead of the socket; 0 = 2 x threads")
    ahead_bytes: int = Field(
        64 * MiB, gt=0, description="results computed ahead of a stream's socket, at most (and at least one job's)"
    )
    flush_bytes: int = Field(1 * MiB, gt=0, description="coalesce stream writes up to this many bytes")
    drain_seconds: float = Field(
        20.0,
        ge=0,
        le=3600,
        description="after SIGTERM, how long running streams may finish before they are ended (keep it under the "
        "orchestrator's kill timeout: Kubernetes waits 30 s by default)",
    )

    @model_validator(mode="after")
    def _limits_nest(self) -> Settings:
        if self.max_file_bytes > self.max_request_bytes:
            raise ValueError("max_file_bytes cannot exceed max_request_bytes")
        if self.max_request_decoded_bytes > self.memory_budget_bytes:
            raise ValueError("max_request_decoded_bytes cannot exceed memory_budget_bytes")
        return self

    @property
    def pool_threads(self) -> int:
        """Threads per worker. By default the workers share the cores: a thread per core in every worker
        oversubscribes them, and throughput falls (docs/architecture.md has the figures)."""
        return self.threads or max(1, usable_cores() // self.workers)

    @property
    def items_in_flight(self) -> int:
        return self.inflight or 2 * self.pool_threads


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (taskset, a cpuset), capped by a cgroup v2 CPU quota
    (``docker run --cpus``, a Kubernetes CPU limit) rounded up. ``os.cpu_count()`` counts the machine's, so a
    replica pinned to one core of two ran two threads that took turns on it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except (OSError, ValueError):
        return cores
    return cores if quota == "max" else max(1, min(cores, math.ceil(int(quota) / int(period))))
