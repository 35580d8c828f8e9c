"""A client spread over several real servers on one data dir, without a balancer: the same bytes as one
server, failover when a replica is killed mid-epoch, a replica used again once it is back, a typed error when
all are down, a refusal when an endpoint serves other content under the same name, and a delete whose answer
was lost counted as done."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from augserve.devserver import ServerProcess
from augserve_client import Client, NotFoundError, ReplicaMismatchError, TransportError
from augserve_client.torch_dataset import AugmentedDataset
from torch.utils.data import DataLoader

pytestmark = pytest.mark.slow
N = 48
BIG = {"output": {"size": [384, 384], "format": "npy"}}  # 1.7 MB batches of 4: a stream outlives any buffer


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, indexed_files: list[Path]) -> Iterator[list[ServerProcess]]:
    data = tmp_path_factory.mktemp("replicas") / "data"
    servers = [ServerProcess(data, threads=1).start() for _ in range(3)]
    with Client(servers[0].url) as client:
        client.upload_dataset("shared", indexed_files * 3, labels=list(range(3 * N)), progress=False)
    yield servers
    for server in servers:
        server.stop()


def by_index(urls: list[str] | str, spec: dict, workers: int) -> dict[int, bytes]:
    data = AugmentedDataset(urls, "shared", spec, batch_size=4, seed=5, prefetch=1)
    found = {}
    for images, labels in DataLoader(data, batch_size=None, num_workers=workers):
        found.update({int(label): image.numpy().tobytes() for image, label in zip(images, labels, strict=True)})
    return found


def test_an_epoch_spread_over_replicas_has_the_bytes_of_one_server(
    replicas: list[ServerProcess], small_spec: dict
) -> None:
    one = by_index(replicas[0].url, small_spec, workers=0)
    assert sorted(one) == list(range(3 * N))
    assert by_index([server.url for server in replicas[:2]], small_spec, workers=2) == one
    assert by_index(",".join(server.url for server in replicas), small_spec, workers=2) == one


def test_killing_a_replica_mid_epoch_loses_and_repeats_nothing_and_it_is_used_again_once_back(
    replicas: list[ServerProcess],
) -> None:
    victim = replicas[0]
    with Client([server.url for server in replicas]) as client:
        seen: list[int] = []
        for number, batch in enumerate(client.epoch("shared", BIG, batch_size=4, seed=1, shard_index=0)):
            seen += batch.labels.tolist()
            if number == 2:
                victim.kill()  # shard 0 prefers replica 0: its stream breaks off
        assert sorted(seen) == list(range(3 * N))

        replicas[0] = ServerProcess(victim.data_dir, port=victim.port, threads=1).start()
        time.sleep(1.0)  # the backoff of the failed endpoint passes; the next stream probes it
        before = client.replicas.all[0].http.get("/v1/datasets/shared").json()["cache"]
        again = [label for batch in client.epoch("shared", BIG, batch_size=4, seed=2) for label in batch.labels]
        after = client.replicas.all[0].http.get("/v1/datasets/shared").json()["cache"]
    assert sorted(int(label) for label in again) == list(range(3 * N))
    assert after["misses"] + after["hits"] > before["misses"] + before["hits"]  # the epoch was served there


def test_all_replicas_down_is_a_typed_error_after_the_retry_budget(tmp_path: Path) -> None:
    from augserve.devserver import free_port

    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    started = time.monotonic()
    with Client(urls, timeout=5) as client, pytest.raises(TransportError):
        list(client.epoch("shared", BIG, batch_size=4, retries=3))
    assert time.monotonic() - started < 30


def test_an_endpoint_with_other_content_under_the_name_is_refused(
    replicas: list[ServerProcess], tmp_path: Path, indexed_files: list[Path]
) -> None:
    other = ServerProcess(tmp_path / "other", threads=1).start()
    try:
        with Client(other.url) as client:
            client.upload_dataset("shared", indexed_files[:8], labels=list(range(8)), progress=False)
        with Client([replicas[1].url, other.url]) as client, pytest.raises(ReplicaMismatchError, match="same"):
            for shard in range(2):
                list(client.epoch("shared", BIG, batch_size=4, shard_index=shard, shard_count=2))
    finally:
        other.stop()


class DeletesThenDies:
    """A replica that does the delete it is asked for (on ``server``) and dies before it answers."""

    def __init__(self, server: ServerProcess) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.server = server
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(65536)
            method, path = request.split(b" ")[:2]
            httpx.request(method.decode(), self.server.url + path.decode(), timeout=30)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


def test_a_delete_whose_answer_was_lost_is_done_not_missing(
    replicas: list[ServerProcess], indexed_files: list[Path]
) -> None:
    """The replica that deleted the dataset died before answering; the next says 404. The client reports the
    delete done, as it is, rather than a NotFoundError for a dataset it did delete."""
    first, second = replicas[0], replicas[1]
    with Client(first.url) as client:
        client.upload_dataset("doomed", indexed_files[:2], labels=[0, 1], progress=False)
    dying = DeletesThenDies(first)
    try:
        with Client([dying.url, second.url]) as client:
            client.delete_dataset("doomed")
            with pytest.raises(NotFoundError):
                client.describe("doomed")
            with pytest.raises(NotFoundError):  # a delete of what was never there is still a 404
                client.delete_dataset("doomed")
    finally:
        dying.close()
