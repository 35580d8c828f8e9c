"""Server memory over many epochs: peak RSS, and whether RSS keeps growing once the cache is warm.

A fresh server (1 worker) streams ``memory_epochs`` full epochs. After each, the resident set of the whole
server tree is read from /proc (via psutil); the peak is the kernel's high-water mark (VmHWM) of each process.
The first epoch decodes every image into the cache and the second lets the allocator settle, so the baseline
is the RSS after the second epoch; "flat" means every later reading stays within 5% of it.
"""

from __future__ import annotations

from typing import Any

import psutil
from augserve_client import Client

from .common import Config
from .service import stream_shard
from .serving import CLIENT_TIMEOUT, BenchServer

MiB = 1 << 20
TOLERANCE = 0.05


def rss(server: BenchServer) -> int:
    return sum(psutil.Process(pid).memory_info().rss for pid in server.pids())


def peak(server: BenchServer) -> int:
    """Sum over the tree of each process's VmHWM (peak resident set), in bytes."""
    total = 0
    for pid in server.pids():
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) * 1024
    return total


def run(server: BenchServer, dataset: str, config: Config) -> dict[str, Any]:
    start = rss(server)
    readings = []
    with Client(server.url, timeout=CLIENT_TIMEOUT) as client:
        for epoch in range(config.memory_epochs):
            stream_shard(client, dataset, config, epoch, 0, 1)
            readings.append(rss(server))
    baseline = readings[min(1, len(readings) - 1)]
    after = readings[min(1, len(readings) - 1) :]
    deviation = max(abs(value - baseline) / baseline for value in after)
    return {
        "epochs": config.memory_epochs,
        "rss_start_mib": round(start / MiB, 1),
        "rss_after_epoch_mib": [round(value / MiB, 1) for value in readings],
        "baseline_mib": round(baseline / MiB, 1),
        "growth_pct": round(100 * (readings[-1] - baseline) / baseline, 2),
        "max_deviation_pct": round(100 * deviation, 2),
        "flat": deviation <= TOLERANCE,
        "peak_rss_mib": round(peak(server) / MiB, 1),
    }
