"""REPLICAS: two replicas reached through the client's endpoint list, the same two behind nginx, and one replica.

Issue 14 asks when to give trainers the list of base URLs and when one balancer's address; this measures what
each path costs on one machine. Every configuration runs the SERVICE epoch load (two client streams, each going
through its shard of every epoch back to back, the bench's spec and photos), against replicas that are
``python -m augserve`` processes with 1 worker and 1 augmentation thread on one shared data dir, as docker/
runs them:

- one: both streams to replica 0;
- list: ``Client([replica 0, replica 1])``: shard ``i`` prefers endpoint ``i % 2``, so one stream each;
- nginx: ``Client(nginx)``, nginx running docker/nginx.conf itself (least_conn, keepalive to the replicas,
  no buffering) through the tests' harness, which swaps only its listen address and replica list.

Each replica is pinned to a core of its own (``os.sched_setaffinity`` before it starts, which every thread and
child inherits): "a replica" is then one core, as it would be one machine, and two replicas / one is a scaling
figure rather than whatever the scheduler lent a lone replica's event loop on the idle core. The client and
nginx are not pinned: on this machine they take their CPU from the replicas' cores, which is what a balancer
on the trainers' machines would cost; nginx's own CPU per variant is reported apart, so it can be set against
a balancer on a machine of its own. The three run in turns, round after round, on the same servers, so a slow
spell on a shared machine lands on all of them.

    .venv/bin/python -m bench.replicas [--smoke] [--out DIR]   # this section alone: DIR/replicas.{json,md}
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil
from augserve_client import Client

from . import data
from .common import (
    Config,
    Rate,
    affinity,
    cores_cell,
    measure,
    measured_on,
    median_rate,
    quiet,
    ratio,
    section_main,
    tree_cpu,
)
from .service import STREAMS, Epochs, epochs_work, stream_shard, warm
from .serving import CLIENT_TIMEOUT, BenchServer, register, start_replicas

HARNESS = Path(__file__).resolve().parent.parent / "tests" / "deploy" / "nginx_harness.py"
CONFIGURATIONS = ("one", "list", "nginx")
LABELS = {
    "one": "one replica",
    "list": "two replicas, the client's endpoint list",
    "nginx": "two replicas behind nginx (docker/nginx.conf)",
}
FULL_ROUNDS = 7  # each window is about a second: the rounds are what outlasts a neighbour's burst


def nginx_harness() -> ModuleType:
    """The tests' harness (tests/deploy/nginx_harness.py), loaded from its file: one way to run the shipped
    nginx.conf on loopback, for the deploy tests and this benchmark alike."""
    spec = importlib.util.spec_from_file_location("nginx_harness", HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Fleet:
    """What one configuration's traffic reaches, read as ``measure`` reads a server's CPU: the replicas it uses
    (loop, pool and each replica's total) and nginx (master and workers)."""

    servers: list[BenchServer]
    nginx_pid: int | None = None
    cores: Collection[int] | None = None  # several cores: others' CPU is counted over the whole machine

    def cpu(self) -> dict[str, float]:
        each = [server.cpu() for server in self.servers]
        found = {role: sum(cpu[role] for cpu in each) for role in ("loop", "pool", "total")}
        found.update({f"replica_{number}": cpu["total"] for number, cpu in enumerate(each)})
        if self.nginx_pid is not None:
            root = psutil.Process(self.nginx_pid)
            found["nginx"] = tree_cpu([root.pid, *(child.pid for child in root.children(recursive=True))])
            found["total"] += found["nginx"]
        return found


@dataclass
class Route:
    """One configuration: its clients (one a stream, kept for the whole run as a trainer keeps its own) and the
    processes they reach."""

    clients: list[Client]
    fleet: Fleet


def connected(urls: list[str], dataset: str, config: Config) -> list[Client]:
    """A client a stream, each having streamed its shard of one untimed epoch: connections open, and with
    several endpoints, the dataset's digest checked on each."""
    clients = [Client(urls, timeout=CLIENT_TIMEOUT) for _ in range(STREAMS)]
    for stream, client in enumerate(clients):
        stream_shard(client, dataset, config, 0, stream, STREAMS)
    return clients


@contextmanager
def routes(replicas: list[BenchServer], dataset: str, config: Config, work: Path) -> Iterator[dict[str, Route]]:
    """The three configurations over the same replicas; nginx's is left out, saying why, where nginx is missing."""
    urls = [replica.url for replica in replicas]
    found = {
        "one": Route(connected(urls[:1], dataset, config), Fleet(replicas[:1])),
        "list": Route(connected(urls, dataset, config), Fleet(replicas)),
    }
    with ExitStack() as stack:
        harness = nginx_harness()
        try:
            harness.find_nginx()
        except harness.NginxMissing:
            pass
        else:
            nginx = stack.enter_context(harness.NginxProcess(work / "nginx", [replica.port for replica in replicas]))
            found["nginx"] = Route(connected([nginx.url], dataset, config), Fleet(replicas, nginx.process.pid))
        try:
            yield found
        finally:
            for route in found.values():
                for client in route.clients:
                    client.close()


def window(route: Route, dataset: str, config: Config, epochs: Epochs) -> Rate:
    return measure(epochs_work(route.clients, dataset, config, epochs.take(config.epochs)), route.fleet)


def rounds(found: dict[str, Route], dataset: str, config: Config) -> dict[str, list[Rate]]:
    """The configurations in turns, ``FULL_ROUNDS`` rounds (``config.repeats`` in a smoke run)."""
    epochs = Epochs()
    rates: dict[str, list[Rate]] = {name: [] for name in found}
    for _ in range(config.repeats if config.smoke else FULL_ROUNDS):
        for name, route in found.items():
            rates[name].append(quiet(lambda route=route: window(route, dataset, config, epochs), config.tries))
    return rates


def run(config: Config, dataset: data.Dataset, work: Path) -> dict[str, Any]:
    """Two pinned replicas on ``work``'s data dir, each warmed; the three configurations side by side."""
    replicas = start_replicas(work / "data", work / "logs", 2, pin=True, threads=1)
    try:
        name = register(replicas[0], dataset.root)
        for replica in replicas:
            warm(replica, name, config)  # each replica decodes the set into its own cache
        with routes(replicas, name, config, work) as found:
            rates = rounds(found, name, config)
        pinned = {f"replica_{number}": affinity(replica.pids()) for number, replica in enumerate(replicas)}
    finally:
        for replica in replicas:
            replica.stop()
    return summarise(rates, pinned)


PAIRS = {"list_vs_one": ("list", "one"), "nginx_vs_one": ("nginx", "one"), "list_vs_nginx": ("list", "nginx")}


def summarise(rates: dict[str, list[Rate]], pinned: dict[str, list[int]]) -> dict[str, Any]:
    """Each configuration's median window, the ratios of the medians, and the ratios round by round (the two
    windows of a round ran seconds apart, so those show how much of a ratio is drift)."""
    found: dict[str, Any] = {name: median_rate(windows) for name, windows in rates.items()}
    per_s = {name: found[name]["variants_per_s"] for name in found}
    return {
        **found,
        **{key: _rounded(ratio(per_s.get(a), per_s.get(b))) for key, (a, b) in PAIRS.items()},
        "ratios_by_round": {key: paired(rates, a, b) for key, (a, b) in PAIRS.items()},
        "cores": pinned,
        "nginx_measured": "nginx" in rates,
        "streams": STREAMS,
    }


def paired(rates: dict[str, list[Rate]], a: str, b: str) -> list[float]:
    if a not in rates or b not in rates:
        return []
    return [round(x.per_s / y.per_s, 3) for x, y in zip(rates[a], rates[b], strict=True)]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def lines(results: dict[str, Any]) -> list[str]:
    """The section's table and ratios (results.md and replicas.md)."""
    found = results["replicas"]
    table = [
        "## Two replicas: the client's endpoint list against nginx",
        "",
        f"Epoch streams ({found['streams']} client streams, the SERVICE epoch load) against replicas of 1 worker x 1 "
        f"thread on one data dir, each pinned to a core of its own ({_cores(found['cores'])}); client and nginx "
        "unpinned. The configurations ran in turns, round after round; median window.",
        "",
        "| configuration | variants/s | vs one replica | replica 0 / replica 1 CPU ms/variant | nginx CPU "
        "ms/variant | client cores | server-side cores (replicas + nginx) | other cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    one = found["one"]["variants_per_s"]
    for name in CONFIGURATIONS:
        if name in found:
            table.append(_row(name, found[name], one))
    if not found["nginx_measured"]:
        table += ["", "nginx was not measured: it is not installed here (`make system-deps` installs Debian's)."]
    table += [
        "",
        f"Ratios: two via the list / one {_cell(found['list_vs_one'])}, two via nginx / one "
        f"{_cell(found['nginx_vs_one'])}, list / nginx {_cell(found['list_vs_nginx'])} "
        f"(by round: {found['ratios_by_round']['list_vs_nginx']}).",
    ]
    return table


def _row(name: str, rate: dict[str, Any], one: float) -> str:
    shares = [rate.get(f"server_replica_{number}_ms_per_variant") for number in range(2)]
    split = " / ".join("-" if share is None else f"{share:.3f}" for share in shares)
    nginx = rate.get("server_nginx_ms_per_variant")
    return (
        f"| {LABELS[name]} | {rate['variants_per_s']:.0f} | {rate['variants_per_s'] / one:.2f} | {split} "
        f"| {'' if nginx is None else f'{nginx:.3f}'} | {cores_cell(rate['client_cores'])} "
        f"| {cores_cell(rate['server_cores'])} | {cores_cell(rate['other_cores'])} |"
    )


def _cores(pinned: dict[str, list[int]]) -> str:
    return ", ".join(f"{name.replace('_', ' ')} on core {'/'.join(map(str, cores))}" for name, cores in pinned.items())


def _cell(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.2f}"


def markdown(results: dict[str, Any]) -> str:
    return (
        "\n".join(
            [
                "# augserve benchmark: replicas (`python -m bench.replicas`)",
                "",
                measured_on(results),
                "",
                *lines(results),
            ]
        )
        + "\n"
    )


def standalone(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    config = Config.tiny() if args.smoke else Config.full()
    dataset = data.make_dataset(work / "images", config.samples, config.classes)
    return {"config": vars(config), "replicas": run(config, dataset, work)}


def main(argv: list[str] | None = None) -> None:
    section_main(__doc__, "replicas", standalone, markdown, argv)


if __name__ == "__main__":
    main()
