"""``make bench``: every measurement of issues 4, 14 (replicas, a pinned core) and 17 (the cold path), side by
side in one run; results in bench/results/.

    .venv/bin/python -m bench.run                   # full run (a few minutes on 2 cores)
    .venv/bin/python -m bench.run --smoke --out DIR  # tiny sizes, every section, well under a minute

Order matters on a shared 2-core machine: LIMIT runs first and again last (its median spans both), each
server configuration runs alone (the previous one is stopped), and PEER runs with no server alive at all. The
sections that also run on their own (``python -m bench.NAME``: targets, replicas, pinned) write their
NAME.json and NAME.md here too, and their tables are in results.md.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import cold, data, decoders, limit, memory, pinned, replicas, service, targets, transport
from bench.common import Config, arguments
from bench.serving import BenchServer, register

# (workers, threads per worker; 0 = the default, cores / workers). Smoke skips the 1-thread pair: starting a
# 2-worker server costs ~8 s here (each worker imports albumentations), and the pair adds no new code path.
SERVER_CONFIGS = ((1, 0), (2, 0), (1, 1), (2, 1))
SMOKE_SERVER_CONFIGS = SERVER_CONFIGS[:2]


def log(message: str, started: float = time.perf_counter()) -> None:
    print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)


def key(workers: int, threads: int) -> str:
    return f"workers_{workers}" if threads == 0 else f"workers_{workers}_threads_{threads}"


def main(argv: list[str] | None = None) -> None:
    args = arguments(__doc__).parse_args(argv)
    config = Config.tiny() if args.smoke else Config.full()

    from bench import report  # matplotlib is imported only when the results are written

    with tempfile.TemporaryDirectory(prefix="augserve-bench-") as tmp:
        work = Path(tmp)
        dataset = data.make_dataset(work / "images", config.samples, config.classes)
        images = data.decode_all(dataset)
        blobs = service.read_blobs(dataset.files)
        log(f"{len(images)} JPEGs, {dataset.bytes / 1e6:.1f} MB, in {dataset.root}")
        limit_before, cold_before = limit.windows(config, images), limit.cold_windows(config, blobs)
        log("LIMIT and LIMIT_COLD (before)")
        results: dict[str, Any] = {"machine": report.machine(), "config": vars(config)}
        results["decoders"] = decoders.run(blobs, config)
        log(f"decoders: simplejpeg/Pillow CPU {results['decoders']['speed']['simplejpeg_vs_pillow_cpu']}")
        results["transport"] = transport.run(config)
        log(f"TRANSPORT: {results['transport']['ms_per_variant']} ms of CPU per raw variant")
        results.update(measure_servers(config, dataset, work))
        results["cold"] = cold.run(config, dataset, cold.decoded_bytes(images), work)
        log("SERVICE_COLD and OURS_COLD")
        results.update(measure_sections(config, dataset, images, work))
        from bench import peer  # torch: imported after LIMIT has forked its processes

        results["peer"] = peer.peer_rate(dataset.files, dataset.labels, config)
        log("PEER")
        results["memory"] = measure_memory(config, dataset, work)
        log("memory")
        results["limit"] = limit.summarise(limit_before, limit.windows(config, images))
        results["limit_cold"] = limit.summarise(cold_before, limit.cold_windows(config, blobs))
        log("LIMIT and LIMIT_COLD (after)")
    report.write(results, args.out)
    log(f"results in {args.out}")


def measure_servers(config: Config, dataset: data.Dataset, work: Path) -> dict[str, Any]:
    """SERVICE (epoch, augment), OURS, latency, formats and encodings, one server configuration at a time."""
    from bench import encodings, formats, latency, peer

    groups = service.request_groups(service.read_blobs(dataset.files), config)[: config.augment_requests]
    epoch: dict[str, Any] = {}
    augment: dict[str, Any] = {}
    ours: dict[str, Any] = {}
    peaks: dict[str, float] = {}
    found: dict[str, Any] = {}
    for workers, threads in SMOKE_SERVER_CONFIGS if config.smoke else SERVER_CONFIGS:
        name = key(workers, threads)
        server = BenchServer(work / "data", work / "logs", workers, threads).start()
        try:
            dataset_name = register(server, dataset.root)
            epoch[name] = service.epoch_rate(server, dataset_name, config)
            log(f"SERVICE epoch {name}: {epoch[name]['variants_per_s']}/s")
            if threads == 0:
                augment[name] = service.augment_rate(server, groups, config)
                log(f"SERVICE augment {name}: {augment[name]['variants_per_s']}/s")
                ours[name] = peer.ours_rate(server, dataset_name, config)
                log(f"OURS {name}: {ours[name]['variants_per_s']}/s")
            if (workers, threads) == (1, 0):
                found["latency"] = latency.run(server, dataset_name, config)
                log("latency")
                found["formats"] = formats.run(server, groups, config)
                log("formats")
                found["encodings"] = encodings.run(server, dataset_name, config)
                log("encodings")
            peaks[name] = round(memory.peak(server) / memory.MiB, 1)
        finally:
            server.stop()
    return {"service": {"epoch": epoch, "augment": augment, "peak_rss_mib": peaks}, "ours": ours, **found}


def measure_sections(config: Config, dataset: data.Dataset, images: list[np.ndarray], work: Path) -> dict[str, Any]:
    """The sections that run on their own too, each starting (and stopping) its own servers."""
    found: dict[str, Any] = {"target_costs": targets.run(*targets.SIZES[config.smoke])}
    log(f"TARGETS: all three cost {found['target_costs']['vs_image']['all']}x the image alone")
    found["replicas"] = replicas.run(config, dataset, work)
    log(f"REPLICAS: list / one {found['replicas']['list_vs_one']}, list / nginx {found['replicas']['list_vs_nginx']}")
    found["pinned"] = pinned.run(config, dataset, images, work)
    log(f"PINNED: SERVICE/LIMIT per core {found['pinned']['service_vs_limit']}")
    return found


def measure_memory(config: Config, dataset: data.Dataset, work: Path) -> dict[str, Any]:
    """Memory on a fresh 1-worker server, so earlier loads do not count towards its growth."""
    server = BenchServer(work / "data", work / "logs", 1, 0).start()
    try:
        return memory.run(server, register(server, dataset.root), config)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
