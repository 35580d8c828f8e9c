"""Starting benchmark servers, finding their processes, and spreading client connections over workers.

Servers are the test suite's ``ServerProcess`` (``python -m augserve`` on a free loopback port), so the bench
measures exactly what a user runs. With several uvicorn workers the kernel hands each new connection to
whichever worker accepts first, and httpx keeps a connection for every later request: two clients can easily
end up on one worker while the other idles. ``spread_clients`` reconnects until each worker holds its share,
and the measurement records whether that still held afterwards.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
from augserve.devserver import ServerProcess
from augserve_client import Client

from .common import TICKS, on_cores, tree_cpu

DATASET = "bench-photos"  # not "bench": AugmentedDataset would take ./bench, a directory, for a folder
CLIENT_TIMEOUT = 300.0
START_TIMEOUT = 240.0  # a server imports albumentations before it is ready: over a minute on a crowded machine


class BenchServer:
    """One server configuration; ``pids`` is the whole process tree (supervisor and workers). ``cores``: the
    cores every process and thread of the server may run on (None: any), ``name``: its log's, when several
    servers of one configuration run at once (replicas)."""

    def __init__(
        self,
        data_dir: Path,
        logs: Path,
        workers: int,
        threads: int = 0,
        *,
        name: str | None = None,
        cores: Collection[int] | None = None,
        **settings: object,
    ) -> None:
        self.workers, self.threads, self.cores = workers, threads, cores
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{name or f'server-w{workers}-t{threads}'}.log"
        self.process = ServerProcess(data_dir, log=log, workers=workers, threads=threads, **settings)

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def port(self) -> int:
        return self.process.port

    def start(self) -> BenchServer:
        with on_cores(self.cores):  # its threads and worker processes inherit the mask from the first
            self.process.start(timeout=START_TIMEOUT)
        deadline = time.monotonic() + 30
        while len(self.worker_pids()) < self.workers and time.monotonic() < deadline:
            time.sleep(0.1)  # readyz answers as soon as the first worker is up
        time.sleep(0.5 if self.workers > 1 else 0)
        return self

    def stop(self) -> None:
        self.process.stop()

    def root(self) -> psutil.Process:
        assert self.process.process is not None
        return psutil.Process(self.process.process.pid)

    def pids(self) -> list[int]:
        root = self.root()
        return [root.pid, *(child.pid for child in root.children(recursive=True))]

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the root alone with 1 worker, its worker children otherwise."""
        if self.workers == 1:
            return [self.root().pid]
        # uvicorn's supervisor may also run a multiprocessing resource tracker: workers are the ones listening.
        return [p.pid for p in self.root().children() if _listens(p, self.port)]

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: ``loop`` (each serving process's main thread, which runs the event loop),
        ``pool`` (its other threads: the augmentation pool) and ``total`` (the whole tree, supervisor included);
        and ``decode``, the seconds the pools spent decoding (``augserve_decode_seconds``, added up over workers:
        time inside the decoder, so on a busy machine an upper bound on its CPU), a part of ``pool``."""
        loop = pool = 0.0
        for pid in self.worker_pids():
            for tid, seconds in _thread_cpu(pid).items():
                if tid == pid:
                    loop += seconds
                else:
                    pool += seconds
        return {"loop": loop, "pool": pool, "decode": self.decode_seconds(), "total": tree_cpu(self.pids())}

    def decode_seconds(self) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=CLIENT_TIMEOUT).text
        found = re.search(r"^augserve_decode_seconds_sum(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    def established_per_worker(self) -> list[int]:
        """Established connections each worker is serving, from any client process (server side)."""
        counts = []
        for pid in self.worker_pids():
            try:
                conns = psutil.Process(pid).net_connections("tcp")
            except psutil.Error:
                conns = []
            counts.append(sum(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == self.port for c in conns))
        return counts

    def connections_per_worker(self) -> list[int]:
        """Established connections from this process to each worker (in ``worker_pids`` order)."""
        mine = {c.laddr.port for c in psutil.Process().net_connections("tcp") if _to_port(c, self.port)}
        counts: Counter[int] = Counter()
        for pid in self.worker_pids():
            for conn in psutil.Process(pid).net_connections("tcp"):
                if conn.status == psutil.CONN_ESTABLISHED and conn.raddr and conn.raddr.port in mine:
                    counts[pid] += 1
        return [counts[pid] for pid in self.worker_pids()]


def start_replicas(data_dir: Path, logs: Path, count: int, pin: bool = False, **settings: object) -> list[BenchServer]:
    """``count`` one-worker replicas on one data dir (as docker/ runs them), each with its own log; with ``pin``,
    replica ``i`` held to the ``i``-th core this process may use (one core each while there are enough). If one
    fails to start, those already up are stopped."""
    cores = sorted(os.sched_getaffinity(0))
    started: list[BenchServer] = []
    try:
        for number in range(count):
            pinned = {cores[number % len(cores)]} if pin else None
            replica = BenchServer(data_dir, logs, 1, name=f"replica-{number}", cores=pinned, **settings)
            started.append(replica.start())
    except BaseException:
        for replica in started:
            replica.stop()
        raise
    return started


def _thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of ``pid``, from /proc/<pid>/task/<tid>/stat (utime + stime)."""
    seconds = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except FileNotFoundError:  # the thread ended
            continue
        seconds[int(tid)] = (int(fields[11]) + int(fields[12])) / TICKS
    return seconds


def _to_port(conn: Any, port: int) -> bool:
    return conn.status == psutil.CONN_ESTABLISHED and bool(conn.raddr) and conn.raddr.port == port


def _listens(process: psutil.Process, port: int) -> bool:
    try:
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in process.net_connections("tcp"))
    except psutil.Error:
        return False


class SpreadSampler:
    """While a window runs, samples how many connections each worker serves (DataLoader workers connect from
    their own processes, so ``spread_clients`` cannot place them); ``share`` is the fraction of samples in
    which every worker served at least one."""

    def __init__(self, server: BenchServer, every: float = 0.1) -> None:
        self.server, self.every = server, every
        self.samples: list[list[int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-spread", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            counts = self.server.established_per_worker()
            if sum(counts):
                self.samples.append(counts)

    def __enter__(self) -> SpreadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def share(self) -> float | None:
        if not self.samples:
            return None
        return round(sum(all(counts) for counts in self.samples) / len(self.samples), 3)


def balanced(server: BenchServer, clients: int) -> bool:
    counts = server.connections_per_worker()
    share = clients // server.workers
    return sum(counts) == clients and all(count == share for count in counts)


def accepted(server: BenchServer, clients: int, timeout: float = 1.0) -> None:
    """Wait until the workers have accepted ``clients`` connections: a connection the kernel has completed but
    no worker has accepted yet belongs to no worker, so judging the spread before that always fails."""
    deadline = time.monotonic() + timeout
    while sum(server.connections_per_worker()) < clients and time.monotonic() < deadline:
        time.sleep(0.005)


@contextmanager
def spread_clients(server: BenchServer, count: int, attempts: int = 40) -> Iterator[list[Client]]:
    """``count`` connected clients, spread evenly over the server's workers when ``count`` allows it."""
    for _ in range(attempts):
        clients = [Client(server.url, timeout=CLIENT_TIMEOUT) for _ in range(count)]
        for client in clients:
            client.streams.connect()  # type: ignore[union-attr]  # streams are what the bench measures
        if count % server.workers:
            break
        accepted(server, count)
        if balanced(server, count):
            break
        for client in clients:
            client.close()
        time.sleep(0.05)
    try:
        yield clients
    finally:
        for client in clients:
            client.close()


def register(server: BenchServer, folder: Path) -> str:
    """Register the ImageFolder (uploads only what the shared data directory lacks)."""
    with Client(server.url, timeout=CLIENT_TIMEOUT) as client:
        return client.upload_folder(DATASET, folder, progress=False)["name"]
