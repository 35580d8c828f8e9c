"""Epoch order and sharding, as pure functions: exactly once, equal shards, deterministic, resumable."""

from __future__ import annotations

import numpy as np
import pytest
from augserve_client.protocol.epochs import (
    EpochRequest,
    Progress,
    batches_per_shard,
    epoch_order,
    progress_after,
    shard_batches,
)
from pydantic import ValidationError


def shard(n: int, **fields: object) -> list:
    return shard_batches(n, EpochRequest(**fields))


def union(n: int, shard_count: int, **fields: object) -> list[int]:
    return sorted(
        int(i)
        for s in range(shard_count)
        for b in shard(n, shard_index=s, shard_count=shard_count, **fields)
        for i in b.indices
    )


@pytest.mark.parametrize(("n", "shard_count", "batch_size"), [(48, 4, 4), (48, 4, 5), (12, 1, 32), (100, 2, 7)])
def test_divisible_shards_are_disjoint_and_cover_the_epoch(n: int, shard_count: int, batch_size: int) -> None:
    assert union(n, shard_count, batch_size=batch_size, seed=3) == list(range(n))


@pytest.mark.parametrize(
    ("n", "shard_count", "batch_size", "drop_last"),
    [(10, 4, 2, False), (10, 4, 2, True), (7, 3, 4, False), (3, 4, 1, False), (50, 6, 4, True)],
)
def test_every_shard_gets_the_same_number_of_batches(
    n: int, shard_count: int, batch_size: int, drop_last: bool
) -> None:
    counts = {
        len(shard(n, shard_index=s, shard_count=shard_count, batch_size=batch_size, drop_last=drop_last))
        for s in range(shard_count)
    }
    assert counts == {batches_per_shard(n, shard_count, batch_size, drop_last)}


def test_padding_repeats_samples_and_is_counted() -> None:
    batches = [b for s in range(4) for b in shard(10, shard_index=s, shard_count=4, batch_size=2, seed=1)]
    indices = [int(i) for b in batches for i in b.indices]
    padded = sum(b.padding for b in batches)
    assert len(indices) == 12 and padded == 2
    assert set(indices) == set(range(10))  # every sample still appears; 2 appear twice
    for b in batches:  # padded samples are the batch's trailing ones
        real = b.indices[: len(b.indices) - b.padding]
        assert len(real) + b.padding == len(b.indices)


def test_drop_last_gives_full_batches_and_no_repeats() -> None:
    batches = [b for s in range(3) for b in shard(50, shard_index=s, shard_count=3, batch_size=4, drop_last=True)]
    assert all(len(b.indices) == 4 and b.padding == 0 for b in batches)
    indices = [int(i) for b in batches for i in b.indices]
    assert len(indices) == len(set(indices)) == 48


def test_order_depends_on_seed_and_epoch_only() -> None:
    assert np.array_equal(epoch_order(100, 1, 0, True), epoch_order(100, 1, 0, True))
    assert not np.array_equal(epoch_order(100, 1, 0, True), epoch_order(100, 1, 1, True))
    assert not np.array_equal(epoch_order(100, 1, 0, True), epoch_order(100, 2, 0, True))
    assert np.array_equal(epoch_order(100, 1, 0, False), np.arange(100))


def test_start_and_end_batch_select_a_slice_of_the_shard() -> None:
    full = shard(48, shard_index=1, shard_count=2, batch_size=5, seed=9)
    part = shard(48, shard_index=1, shard_count=2, batch_size=5, seed=9, start_batch=2, end_batch=4)
    assert [b.number for b in part] == [2, 3]
    assert all(np.array_equal(a.indices, b.indices) for a, b in zip(full[2:4], part, strict=True))


@pytest.mark.parametrize(
    "fields",
    [
        {"shard_index": 2, "shard_count": 2},
        {"batch_size": 0},
        {"seed": -1},
        {"start_batch": 3, "end_batch": 2},
        {"unknown": 1},
    ],
)
def test_invalid_requests_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        EpochRequest(**fields)


def delivered_by(n: int, shard_count: int, counts: dict[int, int], **fields: object) -> list[int]:
    """The samples (without padding) that shards delivered, ``counts[shard]`` batches each."""
    return [
        int(index)
        for s in range(shard_count)
        for batch in shard(n, shard_index=s, shard_count=shard_count, **fields)[: counts[s]]
        for index in batch.indices[: len(batch.indices) - batch.padding]
    ]


@pytest.mark.parametrize(
    ("n", "before", "after", "batch_size"), [(48, 4, 6, 4), (48, 4, 1, 4), (50, 4, 3, 4), (37, 6, 2, 5), (100, 3, 8, 7)]
)
def test_a_resumed_epoch_on_another_split_delivers_the_rest_exactly_once(
    n: int, before: int, after: int, batch_size: int
) -> None:
    """Shards stop at uneven points (as workers do), the progress is taken, and another split finishes the
    epoch; then once more, on a third split. Every sample exactly once, padding aside."""
    rng = np.random.default_rng(n)
    fields = {"batch_size": batch_size, "seed": 3, "epoch": 1}
    total = batches_per_shard(n, before, batch_size, False)
    counts = {s: int(rng.integers(0, total + 1)) for s in range(before)}
    first = delivered_by(n, before, counts, **fields)
    progress = progress_after(n, None, before, batch_size, False, counts)
    assert sorted(progress.positions().tolist()) == sorted(set(progress.positions().tolist()))

    remaining = batches_per_shard(n - len(first), after, batch_size, False)
    middle_counts = {s: remaining // 2 for s in range(after)}
    middle = delivered_by(n, after, middle_counts, skip=progress, **fields)
    later = progress_after(n, progress, after, batch_size, False, middle_counts)
    last = delivered_by(n, 2, {0: 10**6, 1: 10**6}, skip=later, **fields)
    assert sorted(first + middle + last) == list(range(n))


def test_progress_is_a_prefix_when_the_shards_stepped_together() -> None:
    progress = progress_after(48, None, 4, 4, False, {0: 2, 1: 2, 2: 2, 3: 2})
    assert (progress.prefix, progress.also) == (32, [])
    ahead = progress_after(48, None, 4, 4, False, {0: 3, 1: 2, 2: 2, 3: 2})
    assert (ahead.prefix, ahead.also) == (33, [36, 40, 44])  # shard 0's third batch: positions 32, 36, 40, 44


def test_a_skip_that_covers_the_epoch_leaves_empty_shards() -> None:
    everything = Progress(prefix=48)
    assert [shard(48, shard_index=s, shard_count=3, batch_size=4, skip=everything) for s in range(3)] == [[], [], []]


def test_skipped_positions_must_not_be_negative() -> None:
    with pytest.raises(ValidationError):
        Progress(prefix=0, also=[-1])
