"""Profile the server (or the client) under one of the SERVICE loads, with py-spy.

    .venv/bin/python -m bench.profile_server epoch --workers 1 --seconds 20 --out /tmp/prof
    .venv/bin/python -m bench.profile_server augment --target client
    .venv/bin/python -m bench.profile_server epoch --cold --decode exact   # SERVICE_COLD: a cache of 5% of the set
    .venv/bin/python -m bench.profile_server epoch --pin   # bench/pinned.py's setup: the server on a core of its own

Starts a fresh server on the benchmark's images, warms it, then drives the load for ``--seconds`` while
``py-spy record`` samples the target: the server's serving processes, or this (client) process. It writes a
speedscope-free raw ``.txt`` of collapsed stacks (readable with grep/sort, and by flamegraph tools) and a
``top`` summary of the functions holding the most samples, with and without ``--gil`` (only samples where
the thread held the GIL: that is what serialises a single process).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from functools import partial
from pathlib import Path

from augserve_client import Client

from bench import cold, data, pinned, service
from bench.common import Config, on_cores
from bench.serving import BenchServer, register, spread_clients

PY_SPY = Path(sys.executable).with_name("py-spy")


def drive(load: str, server: BenchServer, name: str, blobs: list[bytes], config: Config, stop: threading.Event) -> int:
    """Run ``load`` on 2 streams until ``stop`` is set; returns variants delivered."""
    groups = service.request_groups(blobs, config)
    delivered = 0
    with spread_clients(server, service.STREAMS) as clients:
        for epoch in itertools.count(1):
            if stop.is_set():
                break
            work = (
                partial(_epoch_shard, name, config, epoch)
                if load == "epoch"
                else partial(_augment, groups, config, epoch)
            )
            delivered += service.in_parallel(clients, work)
    return delivered


def _epoch_shard(name: str, config: Config, epoch: int, shard: int, client: Client) -> int:
    return service.stream_shard(client, name, config, epoch, shard, service.STREAMS)


def _augment(groups: list[list[bytes]], config: Config, epoch: int, stream: int, client: Client) -> int:
    files = groups[(epoch * service.STREAMS + stream) % len(groups)]
    return service.augment_files(client, files, config, "npy", epoch)[0]


def top(collapsed: Path, leaves: int = 12) -> str:
    """Samples per thread group (pool threads pooled together), and each group's top own-time frames."""
    groups: dict[str, Counter[str]] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or ";" not in stack:
            continue
        thread, *frames = stack.split(";")
        group = re.sub(r"thread \(\d+\): |[-_\d]+$", "", thread) or "thread"
        groups.setdefault(group, Counter())[frames[-1]] += int(count)
        total += int(count)
    lines = [f"{total} samples"]
    for group, own in sorted(groups.items(), key=lambda item: -item[1].total()):
        lines.append(f"\n{group}: {own.total()} samples ({100 * own.total() / max(total, 1):.1f}%)")
        lines += [f"  {100 * n / max(total, 1):5.1f}%  {frame}" for frame, n in own.most_common(leaves)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("load", choices=("epoch", "augment"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--target", choices=("server", "client"), default="server")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/augserve-profile"))
    parser.add_argument("--idle", action="store_true", help="also sample idle threads (where do workers wait?)")
    parser.add_argument("--cold", action="store_true", help="a decoded-image cache of 5%% of the set (SERVICE_COLD)")
    parser.add_argument("--decode", choices=("exact", "fast"), default="exact", help="the server's decode mode")
    parser.add_argument(
        "--pin", action="store_true", help="server (1 worker x 1 thread) on one core, the rest on another"
    )
    args = parser.parse_args()
    server_core, client_core = pinned.cores()
    if args.pin:
        args.workers, args.threads = 1, 1
    config = Config.full()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="augserve-profile-") as tmp:
        work = Path(tmp)
        dataset = data.make_dataset(work / "images", config.samples, config.classes)
        blobs = service.read_blobs(dataset.files)
        settings: dict[str, object] = {"decode": args.decode}
        if args.cold:
            settings["cache_bytes"] = int(cold.CACHE_SHARE * cold.decoded_bytes(data.decode_all(dataset)))
        cores = {server_core} if args.pin else None
        server = BenchServer(work / "data", work / "logs", args.workers, args.threads, cores=cores, **settings).start()
        try:
            with on_cores({client_core} if args.pin else None):  # the driver's threads and py-spy inherit it
                name = register(server, dataset.root)
                service.warm(server, name, config)
                stop = threading.Event()
                result: list[int] = []
                driver = threading.Thread(
                    target=lambda: result.append(drive(args.load, server, name, blobs, config, stop))
                )
                start = time.perf_counter()
                driver.start()
                time.sleep(1.0)
                pids = server.worker_pids() if args.target == "server" else [os.getpid()]
                spies = []
                for pid in pids:
                    for gil in (False, True):
                        kind = f"{args.load}{'-cold' * args.cold}{'-pinned' * args.pin}-{args.decode}"
                        stem = args.out / f"{kind}-{args.target}-w{args.workers}-t{args.threads}-{pid}{'-gil' * gil}"
                        command = [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(int(args.seconds))]
                        command += ["--format", "raw", "--output", f"{stem}.txt", "--threads", "--nonblocking"]
                        if gil:
                            command.append("--gil")
                        elif args.idle:
                            command.append("--idle")
                        spies.append(
                            (stem, subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
                        )
                for _, spy in spies:
                    spy.wait()
                stop.set()
                driver.join()
                wall = time.perf_counter() - start
        finally:
            server.stop()
    print(f"{args.load}: {result[0] / wall:.0f} variants/s while profiling (py-spy itself costs CPU)")
    for stem, _ in spies:
        report = top(Path(f"{stem}.txt"))
        Path(f"{stem}.top").write_text(report + "\n")
        print(f"\n== {stem.name}\n{report}")


if __name__ == "__main__":
    main()
