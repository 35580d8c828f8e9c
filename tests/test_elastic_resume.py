"""A run saved mid-epoch on one topology resumes on another: every sample exactly once, with the bytes of an
uninterrupted epoch. Real StatefulDataLoaders and DataLoaders against a real server; the progress goes through
torch.save and torch.load as a checkpoint would. Samples carry label == dataset index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from augserve.devserver import ServerProcess
from augserve_client.torch_dataset import AugmentedDataset
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

pytestmark = pytest.mark.slow
N, EPOCH = 48, 5


def dataset(server: ServerProcess, name: str, spec: dict, **topology: int) -> AugmentedDataset:
    data = AugmentedDataset(server.url, name, spec, batch_size=4, seed=21, prefetch=1, **topology)
    data.set_epoch(EPOCH)
    return data


def collect(batches: object, found: dict[int, bytes]) -> list[int]:
    labels = []
    for images, batch_labels in batches:  # type: ignore[attr-defined]
        for image, label in zip(images, batch_labels.tolist(), strict=True):
            labels.append(label)
            found[label] = image.numpy().tobytes()
    return labels


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 3 workers on 2 cores
@pytest.mark.parametrize(
    ("ranks", "workers", "steps", "workers_after"),
    [(1, 2, 3, 3), (1, 2, 3, 1), (1, 2, 3, 0), (2, 2, 3, 2)],
    ids=["2w->3w", "2w->1w", "2w->0w", "2rx2w->1r"],
)
def test_a_run_resumes_exactly_once_on_another_topology(
    dataset_server: ServerProcess,
    indexed: str,
    small_spec: dict,
    tmp_path: Path,
    ranks: int,
    workers: int,
    steps: int,
    workers_after: int,
) -> None:
    whole: dict[int, bytes] = {}
    collect(DataLoader(dataset(dataset_server, indexed, small_spec), batch_size=None), whole)

    found: dict[int, bytes] = {}
    before, states = [], []
    for rank in range(ranks):  # each rank steps as far as the others, as DDP ranks do
        loader = StatefulDataLoader(
            dataset(dataset_server, indexed, small_spec, rank=rank, world_size=ranks),
            batch_size=None,
            num_workers=workers,
        )
        iterator = iter(loader)
        before += collect((next(iterator) for _ in range(steps)), found)
        states.append(loader.state_dict())
        del iterator, loader  # the job is preempted

    progress = dataset(dataset_server, indexed, small_spec, rank=0, world_size=ranks).progress(*states)
    json.dumps(progress)  # a plain, inspectable document
    torch.save(progress, tmp_path / "progress.pt")

    resumed = dataset(dataset_server, indexed, small_spec)
    resumed.load_progress(torch.load(tmp_path / "progress.pt"))
    after = collect(DataLoader(resumed, batch_size=None, num_workers=workers_after), found)
    assert len(before) == ranks * steps * 4 and sorted(before + after) == list(range(N))
    assert found == whole  # the bytes of an uninterrupted epoch


def test_progress_is_refused_by_a_dataset_whose_order_differs(
    dataset_server: ServerProcess, indexed: str, small_spec: dict
) -> None:
    data = dataset(dataset_server, indexed, small_spec)
    progress = data.progress(data.state_dict())
    assert (progress["epoch"], progress["prefix"], progress["also"]) == (EPOCH, 0, [])
    other = AugmentedDataset(dataset_server.url, indexed, small_spec, batch_size=4, seed=22)
    with pytest.raises(ValueError, match="order would differ"):
        other.load_progress(progress)
