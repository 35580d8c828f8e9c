"""AugmentedDataset in real PyTorch training loops against a real server: exactly once, resumable, robust.

Samples are registered with label == dataset index, so the labels a trainer receives say which samples it got.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from augserve.devserver import ServerProcess
from augserve_client import Client
from augserve_client.protocol.wire import batch_array
from augserve_client.tensors import as_tensor, shared_bytes
from augserve_client.torch_dataset import AugmentedDataset
from torch import nn
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

N = 48


def dataset(server: ServerProcess, name: str, spec: dict, **options: object) -> AugmentedDataset:
    return AugmentedDataset(server.url, name, spec, batch_size=4, seed=11, prefetch=2, **options)


def test_a_tiny_cnn_trains_on_augmented_batches(dataset_server: ServerProcess, indexed: str, small_spec: dict) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(8 * 16, 2)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = dataset(dataset_server, indexed, small_spec, output="float", mean=[0.5] * 3, std=[0.25] * 3)
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    for epoch in range(2):
        data.set_epoch(epoch)
        for images, labels in DataLoader(data, batch_size=None, num_workers=2):
            assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
            loss = nn.functional.cross_entropy(model(images), labels % 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert len(losses) == 2 * N // 4 and all(np.isfinite(losses))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def epoch_labels(
    server: ServerProcess, name: str, spec: dict, rank: int, world: int, epoch: int = 0, workers: int = 2
) -> list[list[int]]:
    data = dataset(server, name, spec, rank=rank, world_size=world)
    data.set_epoch(epoch)
    return [labels.tolist() for _, labels in DataLoader(data, batch_size=None, num_workers=workers)]


def test_two_workers_times_two_ranks_deliver_every_sample_once(
    dataset_server: ServerProcess, indexed: str, small_spec: dict
) -> None:
    per_rank = [epoch_labels(dataset_server, indexed, small_spec, rank, 2) for rank in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) == N // 2 // 4  # equal batch counts: DDP does not hang
    delivered = [label for batches in per_rank for batch in batches for label in batch]
    assert sorted(delivered) == list(range(N))


def test_same_seed_and_epoch_give_identical_bytes_and_a_new_epoch_new_variants(
    dataset_server: ServerProcess, indexed: str, small_spec: dict
) -> None:
    def images_by_index(epoch: int, workers: int) -> dict[int, bytes]:
        data = dataset(dataset_server, indexed, small_spec)
        data.set_epoch(epoch)
        found = {}
        for images, labels in DataLoader(data, batch_size=None, num_workers=workers):
            found.update({int(label): image.numpy().tobytes() for image, label in zip(images, labels, strict=True)})
        return found

    first, again = images_by_index(0, workers=2), images_by_index(0, workers=0)  # another split, same bytes
    assert first == again
    later = images_by_index(1, workers=2)
    assert sum(first[i] != later[i] for i in range(N)) > N * 0.8


@pytest.mark.slow
def test_the_iterator_survives_a_server_crash_and_restart(tmp_path: Path, indexed_files: list[Path]) -> None:
    """SIGKILL the server mid-epoch, restart it on the same port and data: the epoch completes exactly once.

    144 samples of 384x384 (64 MB) so that the stream is far from finished, whatever the socket buffers hold.
    """
    server = ServerProcess(tmp_path / "data", threads=1).start()
    spec = {"output": {"size": [384, 384], "format": "npy"}}
    restarted: list[ServerProcess] = []
    restart = threading.Thread(
        target=lambda: (
            time.sleep(0.5),
            restarted.append(ServerProcess(server.data_dir, port=server.port, threads=1).start()),
        )
    )
    try:
        with Client(server.url) as client:
            client.upload_dataset("crash", indexed_files * 3, labels=list(range(3 * N)), progress=False)
        data = AugmentedDataset(server.url, "crash", spec, batch_size=4, seed=3, prefetch=0, retries=10)
        seen: list[int] = []
        for number, (_, labels) in enumerate(data):
            seen += labels.tolist()
            if number == 3:
                server.kill()  # no goodbye: the stream breaks off in the middle
                restart.start()
        restart.join()
        assert restarted and sorted(seen) == list(range(3 * N)), Counter(seen).most_common(3)
        with Client(server.url) as client:
            assert "crash" in [d["name"] for d in client.datasets()]
    finally:
        server.stop()
        if restart.is_alive():
            restart.join()
        for process in restarted:
            process.stop()


def test_a_restarted_trainer_resumes_mid_epoch_exactly_once(
    dataset_server: ServerProcess, indexed: str, small_spec: dict
) -> None:
    data = dataset(dataset_server, indexed, small_spec)
    data.set_epoch(2)
    loader = StatefulDataLoader(data, batch_size=None, num_workers=2)
    before: list[int] = []
    for number, (_, labels) in enumerate(loader):
        before += labels.tolist()
        if number == 4:
            state = loader.state_dict()
            break
    del loader  # the trainer dies

    fresh = dataset(dataset_server, indexed, small_spec)
    resumed = StatefulDataLoader(fresh, batch_size=None, num_workers=2)
    resumed.load_state_dict(state)
    after = [label for _, labels in resumed for label in labels.tolist()]
    assert sorted(before + after) == list(range(N))


def test_state_dict_without_workers(dataset_server: ServerProcess, indexed: str, small_spec: dict) -> None:
    data = dataset(dataset_server, indexed, small_spec)
    iterator = iter(data)
    before = [label for _ in range(3) for label in next(iterator)[1].tolist()]
    state = data.state_dict()
    iterator.close()  # the trainer stops here
    assert state["delivered"] == {"0/1": 3}
    fresh = dataset(dataset_server, indexed, small_spec)
    fresh.load_state_dict(state)
    after = [label for _, labels in fresh for label in labels.tolist()]
    assert sorted(before + after) == list(range(N))


def test_a_local_folder_is_uploaded_once(dataset_server: ServerProcess, tmp_path: Path, photos: list) -> None:
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for index in range(4):
            Image.fromarray(photos[0][index * 10 : index * 10 + 40, :40]).save(tmp_path / label / f"{index}.png")
    spec = {"output": {"size": 16, "format": "npy"}}
    first = AugmentedDataset(dataset_server.url, tmp_path, spec, batch_size=4, progress=False)
    second = AugmentedDataset(dataset_server.url, tmp_path, spec, batch_size=4, progress=False)
    assert first.dataset == second.dataset and first.dataset.startswith("ds-")
    labels = sorted(label for _, labels in first for label in labels.tolist())
    assert labels == [0] * 4 + [1] * 4


def test_persistent_workers_see_set_epoch(dataset_server: ServerProcess, indexed: str, small_spec: dict) -> None:
    data = dataset(dataset_server, indexed, small_spec)
    loader = DataLoader(data, batch_size=None, num_workers=2, persistent_workers=True)
    epochs = []
    for epoch in range(2):
        data.set_epoch(epoch)
        found = {
            int(label): image.numpy().tobytes()
            for images, labels in loader
            for image, label in zip(images, labels, strict=True)
        }
        assert sorted(found) == list(range(N))
        epochs.append(found)
    assert sum(epochs[0][i] != epochs[1][i] for i in range(N)) > N * 0.8


def test_workers_read_batches_into_shared_memory_that_dataloader_passes_on_as_it_is() -> None:
    """DataLoader copies a worker's tensor into shared memory unless it is there already; ours is."""
    payload = shared_bytes(2 * 3 * 4 * 3)
    payload[:] = np.arange(payload.size)
    images = batch_array({"dtype": "uint8", "shape": [2, 3, 4, 3]}, payload)
    tensor = as_tensor(images)
    assert tensor.is_shared() and tensor.shape == (2, 3, 4, 3) and tensor.data_ptr() == images.ctypes.data
    np.testing.assert_array_equal(tensor.numpy(), images)
    plain = np.arange(12, dtype=np.uint8).reshape(3, 4)  # read in the main process: a plain view, no copy
    assert not as_tensor(plain).is_shared() and np.shares_memory(as_tensor(plain).numpy(), plain)


def test_a_name_is_a_dataset_name_even_where_a_folder_has_it(
    dataset_server: ServerProcess, indexed: str, small_spec: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / indexed / "class").mkdir(parents=True)  # a local folder that happens to share the name
    monkeypatch.chdir(tmp_path)
    data = dataset(dataset_server, indexed, small_spec)
    assert data.dataset == indexed and data.size == N


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_batches_per_epoch_counts_what_a_rank_receives(
    dataset_server: ServerProcess, indexed: str, small_spec: dict, workers: int
) -> None:
    data = AugmentedDataset(dataset_server.url, indexed, small_spec, batch_size=5, rank=1, world_size=2)
    received = list(DataLoader(data, batch_size=None, num_workers=workers))
    assert len(received) == data.batches_per_epoch(workers)
