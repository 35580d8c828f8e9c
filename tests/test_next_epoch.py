"""The next epoch's stream, opened while the current one drains: taken when the trainer asks for that epoch,
dropped when it asks for another, closed by itself when nobody does; and the batches are exactly those of a
stream opened on demand (same bytes, each sample once), with and without persistent DataLoader workers."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import pytest
from augserve.devserver import ServerProcess
from augserve_client.epoch_batches import EpochBatch
from augserve_client.next_epoch import EpochStreams
from augserve_client.protocol.epochs import EpochRequest
from augserve_client.torch_dataset import AugmentedDataset
from torch.utils.data import DataLoader

N = 48


def dataset(server: ServerProcess, name: str, spec: dict, **options: object) -> AugmentedDataset:
    return AugmentedDataset(server.url, name, spec, batch_size=5, seed=3, prefetch=3, **options)


def epochs(data: AugmentedDataset, order: list[int], workers: int = 0) -> list[list[tuple[int, bytes]]]:
    """(label, image bytes) of every sample, per epoch in ``order``; a persistent loader when there are workers."""
    loader = DataLoader(data, batch_size=None, num_workers=workers, persistent_workers=workers > 0)
    out = []
    for epoch in order:
        data.set_epoch(epoch)
        out.append(
            sorted(
                (int(label), image.numpy().tobytes())
                for images, labels in loader
                for image, label in zip(images, labels, strict=True)
            )
        )
    return out


@pytest.mark.slow
def test_the_next_epoch_starts_on_the_stream_opened_ahead(
    dataset_server: ServerProcess, indexed: str, small_spec: dict
) -> None:
    ahead = dataset(dataset_server, indexed, small_spec)
    got = epochs(ahead, [0, 1, 2])
    assert ahead._epoch_streams().reused == 2  # epochs 1 and 2 began on streams opened while 0 and 1 drained
    plain = epochs(dataset(dataset_server, indexed, small_spec, next_epoch_ahead=False), [0, 1, 2])
    assert got == plain  # the same bytes as streams opened on demand
    for samples in got:
        assert [label for label, _ in samples] == list(range(N))  # each sample exactly once
    assert got[0] != got[1]


@pytest.mark.slow
def test_another_epoch_than_the_next_drops_the_stream_opened_ahead(
    dataset_server: ServerProcess, indexed: str, small_spec: dict
) -> None:
    jumping = dataset(dataset_server, indexed, small_spec)
    got = epochs(jumping, [0, 7, 7])  # 7 is not 0's next; the second 7 is 7 again, not 8
    assert jumping._epoch_streams().reused == 0
    assert got == epochs(dataset(dataset_server, indexed, small_spec, next_epoch_ahead=False), [0, 7, 7])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_persistent_workers_get_the_same_epochs(dataset_server: ServerProcess, indexed: str, small_spec: dict) -> None:
    got = epochs(dataset(dataset_server, indexed, small_spec), [0, 1, 2], workers=2)
    assert got == epochs(dataset(dataset_server, indexed, small_spec, next_epoch_ahead=False), [0, 1, 2], workers=2)
    assert all([label for label, _ in samples] == list(range(N)) for samples in got)


def batches(request: EpochRequest, count: int, closed: threading.Event) -> Iterator[EpochBatch]:
    """A stream of ``count`` one-sample batches numbered by epoch, that says when it is closed."""
    try:
        for number in range(count):
            label = np.array([request.epoch * 1000 + number])
            yield EpochBatch(number, np.zeros((1, 1, 1, 3), np.uint8), label, label, [0], 0)
    finally:
        closed.set()


def test_a_stream_opened_ahead_that_nobody_takes_closes_by_itself() -> None:
    closed = {epoch: threading.Event() for epoch in range(3)}
    streams = EpochStreams(lambda request: batches(request, 10, closed[request.epoch]), depth=2, idle_timeout=0.3)
    request = EpochRequest(batch_size=1, epoch=0)
    assert [int(b.labels[0]) for b in streams.batches(request)] == list(range(10))
    assert closed[1].wait(5.0)  # epoch 1's stream was opened, filled its 2 slots, waited 0.3 s, and closed
    assert not closed[2].is_set()  # and opened nothing after it: it was never the epoch being trained on


def test_a_stream_opened_ahead_is_taken_only_for_its_own_request() -> None:
    closed: defaultdict[int, threading.Event] = defaultdict(threading.Event)
    streams = EpochStreams(lambda request: batches(request, 4, closed[request.epoch]), depth=2)
    first = EpochRequest(batch_size=1, epoch=0)
    list(streams.batches(first))
    time.sleep(0.2)
    other = list(streams.batches(first.model_copy(update={"epoch": 8})))  # not epoch 1: epoch 1's is dropped
    assert closed[1].wait(5.0) and streams.reused == 0
    assert [int(b.labels[0]) for b in other] == [8000, 8001, 8002, 8003]
    nxt = list(streams.batches(first.model_copy(update={"epoch": 9})))
    assert streams.reused == 1 and [int(b.labels[0]) for b in nxt] == [9000, 9001, 9002, 9003]
