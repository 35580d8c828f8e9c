"""SERVICE_COLD and OURS_COLD: the service when its decoded-image cache cannot hold the set (5% of it here), so
every epoch decodes nearly every image again: the regime of a training set larger than the server's RAM.

The same loads as SERVICE (two epoch streams) and OURS (``AugmentedDataset`` in 2 DataLoader workers), against
servers whose ``cache_bytes`` is :data:`CACHE_SHARE` of the set's decoded bytes, in each decode mode, and once
with the disk tier (``disk_cache_bytes``) big enough for the set: its warm-up epoch fills the tier, so the timed
epochs read pixels from the page cache and a hash check instead of decoding them.

``make bench`` runs this with everything else. On its own, with what its ratios need measured in the same run
(LIMIT_COLD, PEER, and SERVICE with the set in RAM for the disk tier's target), into bench/results/cold.*:

    .venv/bin/python -m bench.cold [--tries 1]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import cold_tables, data, limit, memory, service
from .common import Config, arguments, section_main
from .data import Dataset
from .serving import BenchServer, register

CACHE_SHARE = 0.05


@dataclass(frozen=True)
class Cold:
    workers: int
    decode: str  # exact or fast
    disk: bool  # with the disk tier holding the whole set

    @property
    def key(self) -> str:
        return f"workers_{self.workers}_{self.decode}" + "_disk" * self.disk


CONFIGS = (Cold(1, "exact", False), Cold(2, "exact", False), Cold(1, "fast", False), Cold(2, "fast", False))
DISK = Cold(1, "exact", True)
SMOKE_CONFIGS = (Cold(1, "fast", True),)  # one server: the fast decode, the cold RAM cache and the tier at once


def decoded_bytes(images: list[np.ndarray]) -> int:
    return sum(image.nbytes for image in images)


def settings(cold: Cold, decoded: int, work: Path) -> dict[str, object]:
    found: dict[str, object] = {"cache_bytes": int(CACHE_SHARE * decoded), "decode": cold.decode}
    if cold.disk:
        found.update(disk_cache_bytes=2 * decoded, disk_cache_dir=work / f"tier-{cold.key}")
    return found


def run(config: Config, dataset: Dataset, decoded: int, work: Path) -> dict[str, Any]:
    """Every cold configuration, one server at a time: SERVICE_COLD (epoch streams) and OURS_COLD."""
    from . import peer  # torch

    epoch: dict[str, Any] = {}
    ours: dict[str, Any] = {}
    peaks: dict[str, float] = {}
    for cold in SMOKE_CONFIGS if config.smoke else (*CONFIGS, DISK):
        server = BenchServer(work / "data", work / "logs", cold.workers, 0, **settings(cold, decoded, work)).start()
        try:
            name = register(server, dataset.root)
            epoch[cold.key] = service.epoch_rate(server, name, config)
            ours[cold.key] = peer.ours_rate(server, name, config)
            peaks[cold.key] = round(memory.peak(server) / memory.MiB, 1)
        finally:
            server.stop()
    return {"cache_share": CACHE_SHARE, "epoch": epoch, "ours": ours, "peak_rss_mib": peaks}


def standalone(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The cold rows, with what their ratios need from the same run: LIMIT_COLD, PEER, and SERVICE with the set
    in RAM (the disk tier's target)."""
    from . import peer

    config = Config.full() if args.tries is None else replace(Config.full(), tries=args.tries)
    dataset = data.make_dataset(work / "images", config.samples, config.classes)
    images, blobs = data.decode_all(dataset), service.read_blobs(dataset.files)
    before = limit.cold_windows(config, blobs)
    results: dict[str, Any] = {"config": vars(config)}
    results["cold"] = run(config, dataset, decoded_bytes(images), work)
    server = BenchServer(work / "data", work / "logs", 1, 0).start()
    try:
        warm = service.epoch_rate(server, register(server, dataset.root), config)
        results["service"] = {"epoch": {"workers_1": warm}}
    finally:
        server.stop()
    results["peer"] = peer.peer_rate(dataset.files, dataset.labels, config)
    results["limit_cold"] = limit.summarise(before, limit.cold_windows(config, blobs))
    results["cold_rows"] = cold_tables.cold_rows(results)
    results["targets"] = [
        {"target": name, "measured": None if value is None else round(value, 3), "goal": goal}
        for name, value, goal in cold_tables.cold_targets(results)
    ]
    return results


def markdown(results: dict[str, Any]) -> str:
    info, config = results["machine"], results["config"]
    lines = [
        "# augserve benchmark: the cold path alone (`python -m bench.cold`)",
        "",
        f"Measured {info['date']} on {info['cpu']}, {info['cores']} cores shared by client and server; "
        f"{config['samples']} JPEGs, the bench's spec; up to {config['tries']} tries per window. Ratios from this run.",
        "",
        *cold_tables.cold_lines(results),
        "",
        "| target | measured | goal |",
        "|---|---:|---|",
        *(f"| {check['target']} | {check['measured']} | {check['goal']} |" for check in results["targets"]),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__, smoke=False)
    parser.add_argument("--tries", type=int, default=None, help="measure a disturbed window again, up to this often")
    section_main(__doc__, "cold", standalone, markdown, argv, parser)


if __name__ == "__main__":
    main()
