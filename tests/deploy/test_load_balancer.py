"""Live traffic through docker/nginx.conf (Debian's nginx) to two augserve replicas sharing one data directory.

The replicas are real ``python -m augserve`` processes and nginx runs the shipped config with only its listen
address and replica list rendered for loopback, so what passes here is what compose deploys.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from augserve.devserver import ServerProcess
from augserve_client import Client
from augserve_client.torch_dataset import AugmentedDataset
from nginx_harness import NginxProcess

pytestmark = pytest.mark.slow

N = 144  # 3 x the 48 indexed files: an epoch of 384x384 samples is 64 MB, far more than any buffer
SPEC = {"output": {"size": [384, 384], "format": "npy"}}


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    shared = tmp_path / "shared-data"
    started = [ServerProcess(shared, threads=1).start() for _ in range(2)]
    yield started
    for replica in started:
        replica.stop()


@pytest.fixture
def balancer(tmp_path: Path, replicas: list[ServerProcess]) -> Iterator[NginxProcess]:
    with NginxProcess(tmp_path / "nginx", upstream_ports=[r.port for r in replicas]) as lb:
        yield lb


def produced(replica: ServerProcess) -> int:
    """Samples a replica has produced: every epoch sample is one decoded-cache lookup."""
    stats = httpx.get(f"{replica.url}/v1/datasets/lb", timeout=10).json()["cache"]
    return stats["hits"] + stats["misses"]


def register(balancer: NginxProcess, files: list[Path]) -> None:
    with Client(balancer.url) as client:
        created = client.upload_dataset("lb", files * 3, labels=list(range(N)), progress=False)
    assert created["count"] == N


def test_upload_through_the_balancer_then_stream_from_either_replica(
    balancer: NginxProcess, replicas: list[ServerProcess], indexed_files: list[Path]
) -> None:
    register(balancer, indexed_files)
    small = {"output": {"size": 16, "format": "npy"}}
    with Client(balancer.url) as client:
        through_lb = [b.images.copy() for b in client.epoch("lb", small, batch_size=16, seed=2)]
    for replica in replicas:  # both replicas know the dataset and give the very same bytes
        with Client(replica.url) as client:
            direct = [b.images for b in client.epoch("lb", small, batch_size=16, seed=2)]
        assert all(np.array_equal(a, b) for a, b in zip(through_lb, direct, strict=True))


def test_a_long_epoch_arrives_unbuffered(
    balancer: NginxProcess, replicas: list[ServerProcess], indexed_files: list[Path]
) -> None:
    register(balancer, indexed_files)
    before = sum(produced(r) for r in replicas)
    with Client(balancer.url) as client:
        batches = iter(client.epoch("lb", SPEC, batch_size=4, seed=1))
        first = next(batches)
        so_far = sum(produced(r) for r in replicas) - before
        assert first.images.shape == (4, 384, 384, 3)
        assert so_far < N, "the first batch reached the client only after the whole epoch was produced"
        rest = sum(len(batch.labels) for batch in batches)
    assert 4 + rest == N


def test_killing_a_replica_mid_epoch_loses_and_repeats_nothing(
    balancer: NginxProcess, replicas: list[ServerProcess], indexed_files: list[Path]
) -> None:
    register(balancer, indexed_files)
    data = AugmentedDataset(balancer.url, "lb", SPEC, batch_size=4, seed=5, prefetch=0, retries=10, progress=False)
    before = [produced(r) for r in replicas]
    seen: list[int] = []
    killed = None
    for number, (_, labels) in enumerate(data):
        seen += labels.tolist()
        if number == 2:
            serving = max(replicas, key=lambda r: produced(r) - before[replicas.index(r)])
            serving.kill()  # the replica streaming this epoch dies mid-stream
            killed = serving
    assert killed is not None
    survivor = next(r for r in replicas if r is not killed)
    assert survivor.alive() and produced(survivor) > before[replicas.index(survivor)]
    assert sorted(seen) == list(range(N))
