"""``make soak``: many trainers, uploads and augment calls against two replicas for minutes, one replica killed
(SIGKILL) and started again midway. Results in bench/results/soak.json and soak.md.

    .venv/bin/python -m bench.soak                      # the full soak: 10 minutes, 16 trainers (stops by itself)
    .venv/bin/python -m bench.soak --ci --out DIR       # the same run for 60 s with 4 trainers (tests/test_soak.py)

A shared service has to hold up for longer than a test runs: memory that creeps, a stream that loses a batch
once in a thousand, a failover that works the first time only. Every trainer is its own process with the
client's list of both base URLs (in its own order, so half prefer each replica) and streams whole epochs with
``Client.epoch``; the dataset is registered with label == index, so each epoch must deliver every index exactly
once. Uploaders register fresh datasets and delete them; augmenters call ``/v1/augment``. The replicas are
``ServerProcess``es on one data dir, the one that is killed starts again on its port and data dir.

Checks (the same for both lengths; bench/soak_figures.py counts): every epoch exact; no 5xx, neither seen by a
client nor counted by a server; no traceback in a server log; the kill broke connections and the clients failed
over; the killed replica serves epochs again after its restart; every uploader and augmenter got through with no
error; and the RSS of each replica process flat: the median of its last tenth of the run within
``RSS_TOLERANCE`` of the median of its first tenth after warm-up (the first tenth of its life).
"""

from __future__ import annotations

import argparse
import multiprocessing
import queue
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from augserve.devserver import ServerProcess
from augserve_client import Client, InternalServerError, NotFoundError, ProtocolError, TransportError
from PIL import Image

from .common import arguments, section_main
from .serving import start_replicas
from .soak_figures import markdown, summarise

DATASET = "soak"
KILL_AT = 0.4  # of the run: the restarted replica (seconds to start on a loaded machine) then has time to settle
SAMPLE_EVERY = 1.0  # seconds between RSS readings
MiB = 1 << 20


@dataclass(frozen=True)
class SoakConfig:
    seconds: float
    trainers: int
    uploaders: int
    augmenters: int
    samples: int  # in the trainers' dataset
    batch_size: int
    size: int  # side of every augmented sample
    threads: int = 1  # augmentation threads per replica: two replicas share the two cores

    @classmethod
    def full(cls) -> SoakConfig:
        return cls(seconds=600, trainers=16, uploaders=2, augmenters=2, samples=96, batch_size=8, size=32)

    @classmethod
    def ci(cls) -> SoakConfig:
        return cls(seconds=60, trainers=4, uploaders=1, augmenters=1, samples=48, batch_size=8, size=32)

    def spec(self) -> dict[str, Any]:
        return {
            "ops": [
                {"op": "reflect", "horizontal": True, "p": 0.5},
                {"op": "rotate", "angle": [-20, 20], "p": 0.5},
                {"op": "crop", "mode": "random_resized", "size": [self.size, self.size], "scale": [0.5, 1.0]},
            ],
            "output": {"format": "npy"},
        }


# --- what the clients do -------------------------------------------------------------------------------------


def failure_kind(error: BaseException | None) -> str:
    """``5xx`` for an error the server sent (a status or an error frame), ``connection`` for a refused, reset or
    cut-short exchange (what a kill causes); ``probe`` when no exception is in flight (a failed /readyz)."""
    if error is None:
        return "probe"
    if isinstance(error, InternalServerError):
        return "5xx"
    if isinstance(error, TransportError | ProtocolError):
        return "connection"
    return type(error).__name__


def count_failures(client: Client, counts: Counter[str]) -> None:
    """Count each failure the client fails over from, by kind. The client recovers and tells no one, so listen
    where it marks an endpoint down: ``Replicas.failed`` runs inside the ``except`` that caught the error."""
    mark_down = client.replicas.failed

    def counted(replica: Any) -> None:
        counts[failure_kind(sys.exc_info()[1])] += 1
        mark_down(replica)

    client.replicas.failed = counted  # type: ignore[method-assign]


@dataclass
class ClientRun:
    """What one client process's role works with: its number, its client, the run's settings, the stop signal,
    and the failures its client failed over from so far (by kind)."""

    index: int
    client: Client
    config: SoakConfig
    stop: Event
    failures: Counter[str]


def train(run: ClientRun) -> dict[str, Any]:
    """Whole epochs until told to stop: per epoch, its time to first batch and the indices it missed or repeated."""
    stats: dict[str, Any] = {"epochs": 0, "samples": 0, "lost": 0, "duplicated": 0, "first_batch_s": [], "errors": []}
    config, epoch = run.config, 0
    while not run.stop.is_set():
        seen: list[int] = []
        started = time.monotonic()
        batches = run.client.epoch(DATASET, config.spec(), batch_size=config.batch_size, seed=run.index, epoch=epoch)
        try:
            for batch in batches:
                if not seen:
                    stats["first_batch_s"].append(time.monotonic() - started)
                if not np.array_equal(batch.indices, batch.labels) or batch.padding:
                    stats["errors"].append(f"epoch {epoch} batch {batch.number}: labels are not their indices")
                seen += batch.labels.tolist()
                if run.stop.is_set():
                    break
            else:
                stats["epochs"], stats["samples"] = stats["epochs"] + 1, stats["samples"] + len(seen)
                stats["lost"] += config.samples - len(set(seen))
                stats["duplicated"] += len(seen) - len(set(seen))
        except Exception as error:  # recorded, and the soak fails on it; the trainer goes on with its next epoch
            stats["errors"].append(f"epoch {epoch}: {type(error).__name__}: {error}")
        epoch += 1
    return stats


def upload(run: ClientRun) -> dict[str, Any]:
    """Register a dataset of never-seen images (new blobs every round), check it, delete it."""
    stats: dict[str, Any] = {"rounds": 0, "delete_replies_lost": 0, "errors": []}
    with tempfile.TemporaryDirectory(prefix="augserve-soak-up-") as tmp:
        while not run.stop.is_set():
            name = f"soak-upload-{run.index}-{stats['rounds']}"
            files = fresh_images(Path(tmp), np.random.default_rng([run.index, stats["rounds"]]), 8)
            step = "upload"
            try:
                run.client.upload_dataset(name, files, labels=list(range(len(files))), progress=False)
                step = "describe"
                if run.client.describe(name)["count"] != len(files):
                    stats["errors"].append(f"{name}: wrong count")
                step = "delete"
                stats["delete_replies_lost"] += delete(run, name)
            except Exception as error:
                stats["errors"].append(f"{name} {step}: {type(error).__name__}: {error}")
            stats["rounds"] += 1
    return stats


def delete(run: ClientRun, name: str) -> bool:
    """Delete ``name``; True when the kill cut the reply off and the other replica, asked again, answered 404.

    The first replica deleted the dataset and died before it answered; the client then asks the next endpoint,
    where the dataset is already gone. The dataset is deleted as asked, yet the call raises NotFoundError
    (a client issue: a DELETE sent again after a failover should take 404 for done). A 404 with no failover
    during the call stays an error."""
    connection_failures = run.failures["connection"]
    try:
        run.client.delete_dataset(name)
    except NotFoundError:
        if run.failures["connection"] == connection_failures:
            raise
        return True
    return False


def augment(run: ClientRun) -> dict[str, Any]:
    """``/v1/augment`` calls; one cut short by the kill is sent again (a seeded call is replayable)."""
    stats: dict[str, Any] = {"calls": 0, "variants": 0, "cut": 0, "5xx": 0, "errors": []}
    with tempfile.TemporaryDirectory(prefix="augserve-soak-aug-") as tmp:
        images = [path.read_bytes() for path in fresh_images(Path(tmp), np.random.default_rng(run.index), 2)]
    while not run.stop.is_set():
        try:
            variants = list(run.client.augment(images, run.config.spec(), variants=4, seed=stats["calls"]))
        except (TransportError, ProtocolError, InternalServerError) as error:
            stats["cut" if failure_kind(error) == "connection" else "5xx"] += 1
            continue
        except Exception as error:
            stats["errors"].append(f"call {stats['calls']}: {type(error).__name__}: {error}")
            variants = []
        stats["calls"], stats["variants"] = stats["calls"] + 1, stats["variants"] + len(variants)
        if len(variants) != 2 * 4:
            stats["errors"].append(f"call {stats['calls']}: {len(variants)} variants, not 8")
    return stats


ROLES: dict[str, Callable[[ClientRun], dict[str, Any]]] = {"trainer": train, "uploader": upload, "augmenter": augment}


def client_process(
    role: str, index: int, urls: list[str], config: SoakConfig, go: Event, stop: Event, out: Any
) -> None:
    """One client process: ready, wait for the start, run ``role`` until ``stop``, send back its figures."""
    failures: Counter[str] = Counter()
    urls = urls[index % len(urls) :] + urls[: index % len(urls)]  # half the clients prefer each replica
    with Client(urls, timeout=60) as client:
        count_failures(client, failures)
        out.put(("ready", role, index))
        go.wait()
        stats = ROLES[role](ClientRun(index, client, config, stop, failures))
    out.put(("done", role, index, {**stats, "failovers": dict(failures)}))


def fresh_images(folder: Path, rng: np.random.Generator, count: int) -> list[Path]:
    """``count`` small PNGs of noise no one has uploaded before (the name is the content's, so they differ)."""
    paths = []
    for _ in range(count):
        pixels = rng.integers(0, 256, size=(int(rng.integers(24, 48)), int(rng.integers(24, 48)), 3), dtype=np.uint8)
        path = folder / f"{rng.integers(1 << 62):x}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def indexed_images(folder: Path, count: int) -> list[Path]:
    """``count`` distinct crops of the real photos scikit-learn ships, of a few sizes (a resize on every path)."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        y, x = (index * 7) % 300, (index * 13) % 500
        path = folder / f"{index:04d}.png"
        Image.fromarray(photos[index % 2][y : y + 40 + index % 9, x : x + 48]).save(path)
        paths.append(path)
    return paths


# --- what the servers do -------------------------------------------------------------------------------------


def rss(server: ServerProcess) -> int:
    """Resident bytes of the server's whole process tree (uvicorn's workers, when there are several)."""
    assert server.process is not None
    root = psutil.Process(server.process.pid)
    return sum(process.memory_info().rss for process in [root, *root.children(recursive=True)])


def requests_by_status(server: ServerProcess) -> dict[str, Counter[str]]:
    """``augserve_requests_total`` from the server's /metrics, as {route: {status: count}}."""
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    found: dict[str, Counter[str]] = {}
    for labels, value in re.findall(r"^augserve_requests_total\{(.*)\} (\S+)$", text, re.MULTILINE):
        fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        found.setdefault(fields["route"], Counter())[fields["status"]] += int(float(value))
    return found


def cache_bytes(server: ServerProcess) -> float:
    """What the server's decoded-image cache holds: memory that grows by design, up to AUGSERVE_CACHE_BYTES."""
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    found = re.search(r"^augserve_cache_bytes (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


class RssSampler:
    """Reads each replica's RSS every ``SAMPLE_EVERY`` seconds in a thread; ``replicas[i]`` may be replaced."""

    def __init__(self, replicas: list[ServerProcess], started: float) -> None:
        self.replicas, self.started = replicas, started
        # (seconds into the run, replica, RSS MiB, decoded-image cache MiB)
        self.readings: list[tuple[float, int, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-rss", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            for number, replica in enumerate(list(self.replicas)):
                try:
                    reading = (time.monotonic() - self.started, number, rss(replica) / MiB, cache_bytes(replica) / MiB)
                except (psutil.Error, AssertionError, httpx.HTTPError):  # killed and not yet started again
                    continue
                self.readings.append(reading)


# --- the run -------------------------------------------------------------------------------------------------


@contextmanager
def client_processes(urls: list[str], config: SoakConfig) -> Iterator[tuple[Event, Event, Any, int]]:
    """Every client process started and ready: ``(go, stop, results queue, how many)``; stragglers end with it."""
    context = multiprocessing.get_context("spawn")  # no fork of a process that runs threads
    go, stop, out = context.Event(), context.Event(), context.Queue()
    roles = [("trainer", config.trainers), ("uploader", config.uploaders), ("augmenter", config.augmenters)]
    processes = [
        context.Process(target=client_process, args=(role, index, urls, config, go, stop, out), daemon=True)
        for role, count in roles
        for index in range(count)
    ]
    for process in processes:
        process.start()
    try:
        ready = 0
        while ready < len(processes):  # imported and connected: start-up is not soak time
            if not all(process.is_alive() for process in processes):
                raise RuntimeError("a client process died while starting")
            try:
                ready += out.get(timeout=1.0)[0] == "ready"
            except queue.Empty:
                continue
        yield go, stop, out, len(processes)
    finally:
        stop.set()
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()


def collect(out: Any, count: int) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {"trainer": [], "uploader": [], "augmenter": []}
    for _ in range(count):
        try:
            _, role, _, stats = out.get(timeout=120)
        except queue.Empty:
            break
        results[role].append(stats)
    return results


def run(config: SoakConfig, work: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The soak, start to end: the figures and the checks (see the module's docstring)."""
    replicas = [server.process for server in start_replicas(work / "data", work, 2, threads=config.threads)]
    logs = [replica.log_path for replica in replicas]
    try:
        urls = [replica.url for replica in replicas]
        with Client(urls) as client:
            files = indexed_images(work / "indexed", config.samples)
            client.upload_dataset(DATASET, files, labels=list(range(config.samples)), progress=False)
        log(f"2 replicas up, {config.samples} samples registered; starting {config.trainers} trainers")
        with client_processes(urls, config) as (go, stop, out, count):
            started = time.monotonic()
            go.set()
            with RssSampler(replicas, started) as sampler:
                timeline, before_kill = kill_and_restart(replicas, config, started, log)
                stop.set()
            clients = collect(out, count)
        servers = [before_kill, *(requests_by_status(replica) for replica in replicas)]
    finally:
        for replica in replicas:
            replica.stop()
    tracebacks = sum(path.read_text(errors="replace").count("Traceback") for path in logs)
    return summarise(config, clients, servers, sampler.readings, timeline, tracebacks)


def kill_and_restart(
    replicas: list[ServerProcess], config: SoakConfig, started: float, log: Callable[[str], None]
) -> tuple[dict[str, float], dict[str, Counter[str]]]:
    """The run's schedule: SIGKILL replica 0 at ``KILL_AT`` of the run, start it again on its port and data dir,
    and end at ``config.seconds``, or later if the restart was slow: its new life needs a warm-up and two RSS
    windows. The timeline, and replica 0's request counts just before its kill (a kill loses them)."""
    window = config.seconds / 10
    time.sleep(config.seconds * KILL_AT)
    before_kill = requests_by_status(replicas[0])
    victim = replicas[0]
    victim.kill()
    killed_at = time.monotonic() - started
    log(f"replica 0 killed at {killed_at:.0f} s")
    replicas[0] = ServerProcess(victim.data_dir, port=victim.port, log=victim.log_path, threads=config.threads)
    replicas[0].start(timeout=300)  # a loaded machine imports slowly
    restarted_at = time.monotonic() - started
    log(f"replica 0 ready again at {restarted_at:.0f} s")
    ended_at = max(config.seconds, restarted_at + 3 * window)
    time.sleep(max(0.0, ended_at - (time.monotonic() - started)))
    timeline = {"killed_at_s": killed_at, "restarted_at_s": restarted_at, "ended_at_s": time.monotonic() - started}
    return timeline, before_kill


def standalone(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    config = SoakConfig.ci() if args.ci else SoakConfig.full()
    return run(config, work, log=lambda line: print(line, file=sys.stderr))


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__, smoke=False)
    parser.add_argument("--ci", action="store_true", help="the 60 s version with 4 trainers")
    results = section_main(__doc__, "soak", standalone, markdown, argv, parser)
    sys.exit(0 if results["passed"] else 1)


if __name__ == "__main__":
    main()
