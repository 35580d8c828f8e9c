"""PINNED: SERVICE/LIMIT per core. The service on a core of its own against the engine alone on that same core.

When the service runs on other machines than the trainers, what it costs is what one of its cores delivers
against what the engine alone delivers on that core: the client's CPU is somewhere else. Here the server (1
worker, 1 augmentation thread: one core) is pinned to one core and the client to the other, and LIMIT (the
engine in-process, one forked process, ``bench/limit.py``) is pinned to the server's core. Pinning is
``os.sched_setaffinity`` on the thread that starts the process, before it starts: every thread and child
inherits the mask (setting it on a running server's pid would move one thread only), and the run records the
cores the server's threads may use, as a check.

The load is SERVICE epoch's (two client streams through their shards, raw, the bench's spec and photos, the set
in the server's cache). LIMIT and SERVICE windows alternate, round after round, so drift lands on both; the
ratio is of their median windows. Next to it, the CPU per variant on each side (the engine's own in LIMIT; the
server's event loop and pool), and the share of its core the server kept busy: what stands between the two.
``python -m bench.profile_server epoch --pin`` profiles the pinned server under the same load.

    .venv/bin/python -m bench.pinned [--smoke] [--out DIR]   # this section alone: DIR/pinned.{json,md}
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from . import data, limit, service
from .common import Config, Rate, affinity, measured_on, median, median_rate, on_cores, quiet, section_main
from .serving import BenchServer, register

FULL_ROUNDS = 9  # each window is about a second: the rounds are what outlasts a neighbour's burst
GOAL = 0.90  # issue 14: SERVICE/LIMIT per core


def cores() -> tuple[int, int]:
    """(the server's core, the client's core): the last and the first this process may use; one core only
    (a cpuset of one) gives both the same, and the results say so."""
    usable = sorted(os.sched_getaffinity(0))
    return usable[-1], usable[0]


def run(config: Config, dataset: data.Dataset, images: list[np.ndarray], work: Path) -> dict[str, Any]:
    server_core, client_core = cores()
    server = BenchServer(work / "data", work / "logs", 1, 1, name="pinned", cores={server_core}).start()
    try:
        name = register(server, dataset.root)
        with on_cores({client_core}):
            service.warm(server, name, config)
        rates = rounds(server, name, config, images, (server_core, client_core))
        found = summarise(*rates)
        found["cores"] = {"server": affinity(server.pids()), "client": [client_core], "limit": [server_core]}
    finally:
        server.stop()
    return found


def rounds(
    server: BenchServer, name: str, config: Config, images: list[np.ndarray], pins: tuple[int, int]
) -> tuple[list[Rate], list[Rate]]:
    """LIMIT on the server's core, then SERVICE with the client on the other, ``FULL_ROUNDS`` times."""
    server_core, client_core = pins
    engine: list[Rate] = []
    served: list[Rate] = []
    epochs = service.Epochs()
    with limit.loaded(images=images):
        for _ in range(config.repeats if config.smoke else FULL_ROUNDS):
            with on_cores({server_core}):  # the forked engine process inherits it
                engine.append(quiet(partial(limit.run_once, 1, config.passes), config.tries))
            with on_cores({client_core}):  # the client's stream threads inherit it
                served.append(quiet(partial(service.epoch_window, server, name, config, epochs), config.tries))
    return engine, served


def summarise(engine: list[Rate], served: list[Rate]) -> dict[str, Any]:
    """The two medians, their ratio, and the CPU per variant that accounts for it: the engine's in LIMIT against
    the server's loop and pool (the pool's includes the engine's own work)."""
    found: dict[str, Any] = {"limit": median_rate(engine), "service": median_rate(served)}
    limit_rate, service_rate = found["limit"], found["service"]
    engine_ms = limit_rate["client_ms_per_variant"]  # LIMIT's "client" is the engine process
    ratio = service_rate["variants_per_s"] / limit_rate["variants_per_s"]
    by_round = [round(s.per_s / e.per_s, 3) for s, e in zip(served, engine, strict=True)]
    found.update(
        service_vs_limit=round(ratio, 3),
        goal=GOAL,
        met=ratio >= GOAL,
        short_by=round(max(0.0, GOAL - ratio), 3),
        by_round=by_round,
        by_round_median=round(median(by_round), 3),
        engine_ms_per_variant=engine_ms,
        server_ms_per_variant=service_rate["server_ms_per_variant"],
        # Variants per CPU-second on each side: the same ratio with what others took of the core left out.
        cpu_ratio=round(engine_ms / service_rate["server_ms_per_variant"], 3),
        pool_beyond_engine_ms=round(service_rate["server_pool_ms_per_variant"] - engine_ms, 3),
    )
    return found


def lines(results: dict[str, Any]) -> list[str]:
    """The section's table and verdict (results.md and pinned.md)."""
    found = results["pinned"]
    limit_rate, service_rate = found["limit"], found["service"]
    verdict = "met" if found["met"] else f"not met: short by {found['short_by']:.2f}"
    return [
        "## SERVICE/LIMIT per core: the server on a core of its own",
        "",
        f"Server (1 worker x 1 thread) pinned to core {_cores(found['cores']['server'])}, its client (2 epoch "
        f"streams) to core {_cores(found['cores']['client'])}; LIMIT (the engine in one process) pinned to the "
        "server's core. LIMIT and SERVICE windows alternated; median window.",
        "",
        "| configuration | variants/s | vs LIMIT on that core | CPU ms/variant on that core | event loop ms "
        "| pool ms | share of the core busy | client cores (other core) | others on that core |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| LIMIT: the engine alone, pinned | {limit_rate['variants_per_s']:.0f} | 1.00 "
        f"| {found['engine_ms_per_variant']:.3f} | | | {limit_rate['client_cores']:.2f} | "
        f"| {limit_rate['other_cores']:.2f} |",
        f"| SERVICE epoch stream, pinned | {service_rate['variants_per_s']:.0f} | {found['service_vs_limit']:.2f} "
        f"| {service_rate['server_ms_per_variant']:.3f} | {service_rate['server_loop_ms_per_variant']:.3f} "
        f"| {service_rate['server_pool_ms_per_variant']:.3f} | {service_rate['server_cores']:.2f} "
        f"| {service_rate['client_cores']:.2f} | {service_rate['other_cores']:.2f} |",
        "",
        f"SERVICE/LIMIT per core: {found['service_vs_limit']:.2f} (goal >= {found['goal']:.2f}: {verdict}; round by "
        f"round {found['by_round']}, median {found['by_round_median']:.2f}). In CPU: the server's core spent "
        f"{found['server_ms_per_variant']:.3f} ms per variant against the engine's "
        f"{found['engine_ms_per_variant']:.3f}, a ratio of {found['cpu_ratio']:.2f} that other processes' share of the "
        f"core does not move: {service_rate['server_loop_ms_per_variant']:.3f} ms on its event loop and "
        f"{found['pool_beyond_engine_ms']:.3f} ms in its pool beyond the engine's work. The profile of the pinned "
        "server (`python -m bench.profile_server epoch --pin`) is in bench/results/profiles.md.",
    ]


def _cores(cores: list[int]) -> str:
    return "/".join(map(str, cores))


def markdown(results: dict[str, Any]) -> str:
    text = ["# augserve benchmark: SERVICE/LIMIT per core (`python -m bench.pinned`)", "", measured_on(results), ""]
    return "\n".join([*text, *lines(results)]) + "\n"


def standalone(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    config = Config.tiny() if args.smoke else Config.full()
    dataset = data.make_dataset(work / "images", config.samples, config.classes)
    return {"config": vars(config), "pinned": run(config, dataset, data.decode_all(dataset), work)}


def main(argv: list[str] | None = None) -> None:
    section_main(__doc__, "pinned", standalone, markdown, argv)


if __name__ == "__main__":
    main()
