"""What every benchmark shares: the spec, the sizes (full or smoke), and how a rate and its CPU are measured.

Rates are variants per second of wall time. Next to each rate we record the CPU seconds the client process and
the server processes burned in the same window, because on a 2-core machine they compete: a client that parses
with a quarter of a core leaves the server a quarter of a core less.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil

# Reflect horizontal p=0.5, rotate +-15 deg p=0.5, random resized crop to 224x224 (p=1), shift +-10% p=0.5.
SPEC: dict[str, Any] = {
    "ops": [
        {"op": "reflect", "horizontal": True, "p": 0.5},
        {"op": "rotate", "angle": [-15, 15], "p": 0.5},
        {"op": "crop", "mode": "random_resized", "size": [224, 224], "p": 1.0},
        {"op": "shift", "x": [-0.1, 0.1], "y": [-0.1, 0.1], "p": 0.5},
    ],
    "output": {"format": "npy"},
}
SEED = 1234
TICKS = os.sysconf("SC_CLK_TCK")
OTHER_CORES = 0.15  # a window during which other processes used more than this is measured again
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Config:
    """How much work each measurement does; ``smoke`` keeps every section but makes it tiny."""

    smoke: bool
    samples: int
    classes: int
    batch_size: int
    epochs: int  # timed epochs per streaming measurement (after one warm-up epoch)
    passes: int  # LIMIT: passes over the samples per timed window
    repeats: int  # timed windows per measurement; the median is reported
    augment_images: int  # images per /v1/augment request
    augment_variants: int  # variants per image in that request
    augment_requests: int  # requests per timed /v1/augment window (split over the streams)
    latency_requests: int  # single-batch requests per client in the latency test
    memory_epochs: int
    first_batch_trials: int
    tries: int  # a window disturbed by other processes is measured again, up to this many times in all

    @classmethod
    def full(cls) -> Config:
        return cls(False, 512, 4, 32, 4, 4, 3, 16, 8, 16, 16, 10, 15, 3)

    @classmethod
    def tiny(cls) -> Config:
        return cls(True, 16, 2, 8, 1, 1, 1, 4, 2, 2, 2, 3, 2, 1)


@dataclass
class Rate:
    """``variants`` delivered in ``wall_s``, and the CPU seconds spent meanwhile by the client (this process
    and its children, e.g. DataLoader workers), the server, and everything else on the machine
    (``other_cpu_s``: other people's processes, or the hypervisor's steal)."""

    variants: int
    wall_s: float
    client_cpu_s: float
    server_cpu_s: float | None = None
    other_cpu_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return self.variants / self.wall_s

    @property
    def other_cores(self) -> float:
        return self.other_cpu_s / self.wall_s

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        data["variants_per_s"] = round(self.per_s, 1)
        data["client_cores"] = round(self.client_cpu_s / self.wall_s, 3)  # cores the client kept busy
        data["client_ms_per_variant"] = round(1e3 * self.client_cpu_s / self.variants, 3)
        data["other_cores"] = round(self.other_cores, 3)
        if self.server_cpu_s is not None:
            data["server_cores"] = round(self.server_cpu_s / self.wall_s, 3)
            data["server_ms_per_variant"] = round(1e3 * self.server_cpu_s / self.variants, 3)
            total = self.client_cpu_s + self.server_cpu_s
            data["client_cpu_share"] = round(self.client_cpu_s / total, 3) if total else None
        return {**data, **extra}


class ServerCpu(Protocol):
    """What ``measure`` needs from a server: CPU seconds so far, split by role (see ``BenchServer.cpu``), and
    the cores it is pinned to (None: any)."""

    cores: Collection[int] | None

    def cpu(self) -> dict[str, float]: ...


def client_cpu() -> float:
    """CPU seconds of this process (all threads), its live multiprocessing children (persistent DataLoader
    workers; not the servers, which are subprocesses) and the children it has already reaped."""
    times = os.times()
    live = tree_cpu(child.pid for child in multiprocessing.active_children() if child.pid is not None)
    return times.user + times.system + times.children_user + times.children_system + live


def system_busy(core: int | None = None) -> float:
    """CPU seconds the whole machine, or one ``core``, has been busy (user, nice, system, irq, softirq, steal),
    from /proc/stat."""
    label = "cpu" if core is None else f"cpu{core}"
    with open("/proc/stat") as stat:
        fields = next([int(value) for value in line.split()[1:]] for line in stat if line.split()[0] == label)
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / TICKS


def lone_core(cores: Collection[int] | None) -> int | None:
    """The core a process pinned to one core runs on, else None: where others' CPU is what disturbs it."""
    return next(iter(cores)) if cores is not None and len(cores) == 1 else None


def tree_cpu(pids: Iterable[int]) -> float:
    """CPU seconds of live processes (the server and its uvicorn workers)."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def measure(work: Callable[[], int], server: ServerCpu | None = None) -> Rate:
    """Time ``work`` (which returns how many variants it delivered) with client, server and other CPU. For a
    server pinned to one core, "other" is others' CPU on that core alone (the client runs elsewhere then)."""
    core = lone_core(server.cores) if server is not None else None
    server_before = server.cpu() if server is not None else {}
    busy_before, cpu_before, start = system_busy(core), client_cpu(), time.perf_counter()
    variants = work()
    wall, cpu = time.perf_counter() - start, client_cpu() - cpu_before
    busy = system_busy(core) - busy_before
    if server is None:
        return Rate(variants, wall, cpu, None, max(0.0, busy - cpu))
    spent = {role: seconds - server_before.get(role, 0.0) for role, seconds in server.cpu().items()}
    extra = {f"server_{role}_ms_per_variant": round(1e3 * seconds / variants, 3) for role, seconds in spent.items()}
    total = spent.pop("total")
    return Rate(variants, wall, cpu, total, max(0.0, busy - (0.0 if core is not None else cpu) - total), extra)


def quiet(window: Callable[[], Rate], attempts: int = 3, threshold: float = OTHER_CORES) -> Rate:
    """Run a timed window again, up to ``attempts`` times, while other processes keep more than ``threshold``
    cores busy; returns the least disturbed. (Colleagues' test runs share this machine.)"""
    best, tries = window(), 1
    while best.other_cores > threshold and tries < attempts:
        again, tries = window(), tries + 1
        best = again if again.other_cores < best.other_cores else best
    best.extra["tries"] = tries
    return best


def timed(window: Callable[[], Rate], config: Config) -> dict[str, Any]:
    """``config.repeats`` quiet windows of ``window``, summarised by their median."""
    return median_rate([quiet(window, config.tries) for _ in range(config.repeats)])


def median_rate(rates: list[Rate]) -> dict[str, Any]:
    """The median window by rate, with every window's rate kept so the spread is visible."""
    ordered = sorted(rates, key=lambda rate: rate.per_s)
    middle = ordered[len(ordered) // 2]
    return {**middle.summary(), "windows_per_s": [round(rate.per_s, 1) for rate in rates]}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p99 of a few hundred values is then an observed value, not interpolated)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when a side was not measured (smoke runs skip some)."""
    return numerator / denominator if numerator and denominator else None


def measured_on(results: dict[str, Any]) -> str:
    """The line under a section's heading: when, on what, with which set."""
    info, config = results["machine"], results["config"]
    return (
        f"Measured {info['date']} on {info['cpu']}, {info['cores']} cores; {config['samples']} JPEGs (256-640 px, "
        "real photos), the bench's spec (224x224 out). Ratios from this run."
    )


def ms_cell(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def cores_cell(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


@contextmanager
def on_cores(cores: Collection[int] | None) -> Iterator[None]:
    """The calling thread held to ``cores`` for the block (None: left as it is). Whatever it starts meanwhile,
    threads or processes (and their children, through exec too), inherits the mask and keeps it after the block:
    the way to pin a server's every thread, which ``sched_setaffinity`` on its pid alone would not (that call
    moves one thread)."""
    if cores is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def affinity(pids: Iterable[int]) -> list[int]:
    """Every core any thread of ``pids`` may run on: the check that a pinned process tree stayed pinned."""
    found: set[int] = set()
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                found |= os.sched_getaffinity(int(tid))
            except OSError:  # the thread ended
                continue
    return sorted(found)


def arguments(doc: str, smoke: bool = True) -> argparse.ArgumentParser:
    """The command line every section starts from (``python -m bench.NAME``): ``--out``, and ``--smoke``
    where the section has tiny sizes; a section adds its own options to it."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where DIR/NAME.json and NAME.md go")
    if smoke:
        parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the section still runs")
    return parser


def write_section(out: Path, name: str, results: dict[str, Any], markdown: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown)


Measure = Callable[[argparse.Namespace, Path], dict[str, Any]]


def section_main(
    doc: str,
    name: str,
    measure: Measure,
    markdown: Callable[[dict[str, Any]], str],
    argv: list[str] | None = None,
    parser: argparse.ArgumentParser | None = None,
) -> dict[str, Any]:
    """One section run on its own: parse the command line, ``measure(args, work)`` in a scratch directory, add
    the machine, write DIR/NAME.json and NAME.md and print the markdown. The same for every section, so a new
    one is a ``measure`` and a ``markdown``."""
    from .report import machine  # report imports the section modules' tables; they do not import it

    args = (parser or arguments(doc)).parse_args(argv)
    with tempfile.TemporaryDirectory(prefix=f"augserve-{name}-") as tmp:
        results = {"machine": machine(), **measure(args, Path(tmp))}
    text = markdown(results)
    write_section(args.out, name, results, text)
    print(text)
    return results
