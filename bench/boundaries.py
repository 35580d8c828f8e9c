"""Epoch boundaries: short epochs, where the time between one epoch's last batch and the next one's first shows.

    .venv/bin/python -m bench.boundaries              # writes bench/results/boundaries.{json,md}

Issue 17, section 3: with 384 images (12 batches of 32) and windows of 3 epochs, OURS/PEER fell from ~2.8 in
the long epochs of ``make bench`` to ~1.8. Both loaders keep their 2 workers across epochs; the server holds the
set in its cache. Per epoch this records the time from ``iter(loader)`` to the first batch (for OURS after
``set_epoch``), the steady interval between later batches, and the epoch's rate; the boundary's cost is the
first batch's wait less one steady interval: what a trainer loses at each epoch's start.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from . import data
from .common import SEED, SPEC, arguments, section_main
from .peer import WORKERS, JpegFolder, _one_cv2_thread, collate
from .serving import CLIENT_TIMEOUT, BenchServer, register

SAMPLES, BATCH, WINDOW, WINDOWS = 384, 32, 3, 3


def epoch_times(loader: DataLoader, before: Callable[[int], None], epoch: int) -> dict[str, float]:
    """One epoch: seconds to the first batch, the median interval after it, the whole epoch, and its samples."""
    before(epoch)
    start = time.perf_counter()
    stamps, samples = [], 0
    for images, _ in loader:
        stamps.append(time.perf_counter())
        samples += images.shape[0]
    intervals = [b - a for a, b in pairwise(stamps)]
    return {
        "first_s": stamps[0] - start,
        "interval_s": statistics.median(intervals) if intervals else 0.0,
        "epoch_s": stamps[-1] - start,
        "samples": samples,
    }


def measure(loader: DataLoader, before: Callable[[int], None]) -> dict[str, Any]:
    """A warm-up epoch, then ``WINDOWS`` windows of ``WINDOW`` epochs: rates by window, boundaries by epoch."""
    epoch_times(loader, before, 0)
    epochs = [epoch_times(loader, before, number) for number in range(1, 1 + WINDOW * WINDOWS)]
    windows = [epochs[i : i + WINDOW] for i in range(0, len(epochs), WINDOW)]
    rates = [sum(e["samples"] for e in window) / sum(e["epoch_s"] for e in window) for window in windows]
    first = statistics.median(e["first_s"] for e in epochs)
    interval = statistics.median(e["interval_s"] for e in epochs)
    return {
        "variants_per_s": round(statistics.median(rates), 1),
        "windows_per_s": [round(rate, 1) for rate in rates],
        "first_batch_ms": round(1e3 * first, 1),
        "steady_interval_ms": round(1e3 * interval, 1),
        "boundary_cost_ms": round(1e3 * (first - interval), 1),
    }


def peer(dataset: data.Dataset) -> dict[str, Any]:
    loader = DataLoader(
        JpegFolder(dataset.files, dataset.labels),
        batch_size=BATCH,
        shuffle=True,
        num_workers=WORKERS,
        collate_fn=collate,
        worker_init_fn=_one_cv2_thread,
        persistent_workers=True,
    )
    return measure(loader, lambda epoch: None)


def ours(server: BenchServer, name: str) -> dict[str, Any]:
    from augserve_client.torch_dataset import AugmentedDataset

    augmented = AugmentedDataset(server.url, name, SPEC, BATCH, SEED, timeout=CLIENT_TIMEOUT)
    loader = DataLoader(augmented, batch_size=None, num_workers=WORKERS, persistent_workers=True)
    return measure(loader, augmented.set_epoch)


def run(work: Path) -> dict[str, Any]:
    dataset = data.make_dataset(work / "images", SAMPLES, 4)
    server = BenchServer(work / "data", work / "logs", 1, 0).start()
    try:
        found = {"ours": ours(server, register(server, dataset.root))}
    finally:
        server.stop()
    found["peer"] = peer(dataset)  # no server alive
    found["ours_vs_peer"] = round(found["ours"]["variants_per_s"] / found["peer"]["variants_per_s"], 3)
    return found


def markdown(results: dict[str, Any]) -> str:
    info = results["machine"]
    lines = [
        "# augserve benchmark: epoch boundaries (short epochs)",
        "",
        f"Measured {info['date']} on {info['cpu']}, {info['cores']} cores shared by client and server; {SAMPLES} "
        f"JPEGs, batches of {BATCH}, {WINDOWS} windows of {WINDOW} epochs after a warm-up epoch, 2 persistent "
        "DataLoader workers on both sides, a 1-worker server holding the set in its cache.",
        "",
        "| loader | variants/s (median window) | first batch ms | steady interval ms | boundary cost ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for key in ("peer", "ours"):
        row = results["boundaries"][key]
        lines.append(
            f"| {key.upper()} | {row['variants_per_s']:.0f} | {row['first_batch_ms']} | {row['steady_interval_ms']} "
            f"| {row['boundary_cost_ms']} |"
        )
    lines += ["", f"OURS/PEER with short epochs: {results['boundaries']['ours_vs_peer']:.2f}."]
    return "\n".join(lines) + "\n"


def standalone(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    return {"boundaries": run(work)}


def main(argv: list[str] | None = None) -> None:
    section_main(__doc__, "boundaries", standalone, markdown, argv, arguments(__doc__, smoke=False))


if __name__ == "__main__":
    main()
