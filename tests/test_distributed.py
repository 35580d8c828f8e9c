"""AugmentedDataset under real DDP: two gloo ranks, each a process with two DataLoader workers, for every start
method. Spawned and forkserver workers do not inherit the process group; a dataset that asked it there saw rank 0
of 1 in every worker and delivered every sample once per rank, without an error.

Samples are registered with label == dataset index, so the labels a rank receives say which samples it got.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from augserve.devserver import ServerProcess, free_port
from augserve_client.torch_dataset import AugmentedDataset
from torch.utils.data import DataLoader

N = 48
EPOCH = 1  # not the default: set_epoch must reach the workers however they were started
TESTS = Path(__file__).resolve().parent
TOPOLOGY_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def dataset(server: ServerProcess, name: str, spec: dict, **options: object) -> AugmentedDataset:
    """The dataset ddp_rank.py builds in every rank: same seed, batch size and epoch."""
    data = AugmentedDataset(server.url, name, spec, batch_size=4, seed=5, prefetch=2, **options)
    data.set_epoch(EPOCH)
    return data


@pytest.fixture(scope="module")
def single_process(dataset_server: ServerProcess, indexed: str, small_spec: dict) -> dict[int, bytes]:
    """Every sample's bytes in one process without workers: what any split of the epoch must reproduce."""
    found = {}
    for images, labels in dataset(dataset_server, indexed, small_spec, rank=0, world_size=1):
        found.update({int(label): image.numpy().tobytes() for image, label in zip(images, labels, strict=True)})
    assert sorted(found) == list(range(N))
    return found


def run_ranks(config: dict, tmp_path: Path, launch: str) -> list[dict[str, np.ndarray]]:
    """Start two ranks as real processes, as torchrun (or a torch.multiprocessing.spawn script) would, and return
    what each saved. The ranks stop by themselves; any still running when this returns or fails is killed."""
    base = {key: value for key, value in os.environ.items() if key not in TOPOLOGY_VARIABLES}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), base.get("PYTHONPATH")]))
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / f"rank{rank}.log" for rank in range(2)]
    try:
        for rank in range(2):
            env = dict(base)
            if launch == "torchrun":
                env.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            argument = json.dumps(
                {**config, "launch": launch, "rank": rank, "port": port, "out": str(tmp_path / f"{rank}.npz")}
            )
            with open(logs[rank], "wb") as log:
                command = [sys.executable, "-m", "ddp_rank", argument]
                # A session of its own: on failure, killing the group takes the rank's DataLoader workers with it.
                started = subprocess.Popen(
                    command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
                processes.append(started)
        deadline = time.monotonic() + 120
        for rank, process in enumerate(processes):
            code = process.wait(timeout=max(deadline - time.monotonic(), 1))
            assert code == 0, f"rank {rank} exited with {code}:\n{logs[rank].read_text()[-4000:]}"
    finally:
        for process in processes:
            if process.poll() is None:  # still running: the rank and its DataLoader workers go
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
    return [dict(np.load(tmp_path / f"{rank}.npz")) for rank in range(2)]


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("method", "launch"),
    [("fork", "torchrun"), ("spawn", "torchrun"), ("forkserver", "torchrun"), ("spawn", "arguments")],
)
def test_two_ranks_deliver_every_sample_once_whatever_the_start_method(
    dataset_server: ServerProcess,
    indexed: str,
    small_spec: dict,
    single_process: dict[int, bytes],
    tmp_path: Path,
    method: str,
    launch: str,
) -> None:
    """``arguments``: the rank is known only to the process group, not to the environment the workers inherit."""
    config = {"url": dataset_server.url, "name": indexed, "spec": small_spec, "method": method, "epoch": EPOCH}
    ranks = run_ranks(config, tmp_path, launch)
    assert [int(saved["rank"]) for saved in ranks] == [0, 1]
    # 48 samples over 2 ranks x 2 workers: 12 per shard, 3 batches of 4 per worker, 6 per rank; equal, or DDP hangs.
    assert [len(saved["labels"]) for saved in ranks] == [6, 6]
    assert [int(saved["batches_per_epoch"]) for saved in ranks] == [6, 6]
    delivered = np.concatenate([saved["labels"].ravel() for saved in ranks])
    assert sorted(delivered.tolist()) == list(range(N))  # each sample exactly once over both ranks
    for saved in ranks:
        for label, image in zip(saved["labels"].ravel(), saved["images"], strict=True):
            assert image.tobytes() == single_process[int(label)], f"sample {label} differs from one process's"


def labels_of(data: AugmentedDataset, workers: int = 0) -> list[int]:
    loader = DataLoader(data, batch_size=None, num_workers=workers)
    return sorted(label for _, labels in loader for label in labels.tolist())


def forget_topology(monkeypatch: pytest.MonkeyPatch, **environment: str) -> None:
    for variable in TOPOLOGY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK is not"),
        ({"RANK": "1"}, "RANK=1 is set but WORLD_SIZE is not"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "rank 2 of 2"),
        ({"RANK": "one", "WORLD_SIZE": "2"}, "RANK='one' is not an integer"),
    ],
)
def test_a_rank_nobody_knows_raises_instead_of_delivering_samples_twice(
    dataset_server: ServerProcess,
    indexed: str,
    small_spec: dict,
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    message: str,
) -> None:
    """No process group, and an environment that says several ranks run but not which one this is."""
    forget_topology(monkeypatch, **environment)
    data = dataset(dataset_server, indexed, small_spec)
    with pytest.raises(RuntimeError, match=message):
        labels_of(data)
    with pytest.raises(RuntimeError, match=message):
        data.batches_per_epoch(2)


@pytest.mark.parametrize("method", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_a_worker_that_cannot_know_its_rank_raises(
    dataset_server: ServerProcess, indexed: str, small_spec: dict, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """The trainer cannot say either, so nothing is captured for the worker: it raises, and DataLoader re-raises."""
    forget_topology(monkeypatch, WORLD_SIZE="2")
    data = dataset(dataset_server, indexed, small_spec)
    batches = iter(DataLoader(data, batch_size=None, num_workers=2, multiprocessing_context=method))
    try:
        with pytest.raises(RuntimeError, match="WORLD_SIZE=2 is set but RANK is not") as raised:
            next(batches)
        assert "DataLoader worker process" in str(raised.value)
    finally:
        # Left to the garbage collector after an error, torch's shutdown waits for each worker until a timeout.
        batches._shutdown_workers()  # type: ignore[attr-defined]


def test_half_a_topology_in_the_arguments_raises(
    dataset_server: ServerProcess, indexed: str, small_spec: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No process group, no environment: a rank without a world size (or the reverse) is not a topology."""
    forget_topology(monkeypatch)
    with pytest.raises(RuntimeError, match="given rank= but not world_size="):
        labels_of(dataset(dataset_server, indexed, small_spec, rank=1))
    with pytest.raises(RuntimeError, match="given world_size= but not rank="):
        labels_of(dataset(dataset_server, indexed, small_spec, world_size=2))


def test_what_can_be_known_is_used(
    dataset_server: ServerProcess, indexed: str, small_spec: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing set: one process. WORLD_SIZE=1 alone: rank 0. torchrun's variables without a process group: that
    rank. Explicit arguments win over the environment."""
    forget_topology(monkeypatch)
    assert labels_of(dataset(dataset_server, indexed, small_spec)) == list(range(N))
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert labels_of(dataset(dataset_server, indexed, small_spec)) == list(range(N))
    halves = [labels_of(dataset(dataset_server, indexed, small_spec, rank=rank, world_size=2)) for rank in range(2)]
    assert sorted(halves[0] + halves[1]) == list(range(N)) and len(halves[1]) == N // 2
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert labels_of(dataset(dataset_server, indexed, small_spec)) == halves[1]
    with_workers = labels_of(dataset(dataset_server, indexed, small_spec, rank=1, world_size=2), workers=2)
    assert labels_of(dataset(dataset_server, indexed, small_spec), workers=2) == with_workers
    assert labels_of(dataset(dataset_server, indexed, small_spec, rank=0, world_size=2)) == halves[0]
    monkeypatch.setenv("WORLD_SIZE", "3")  # mixed with an explicit world size, the environment's rank still counts
    assert labels_of(dataset(dataset_server, indexed, small_spec, world_size=2)) == halves[1]
