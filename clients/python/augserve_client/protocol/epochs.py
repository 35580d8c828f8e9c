"""Epochs: which samples an epoch visits, in which order, how shards split it, and how a request names it.

Pure functions, shared by the server (which streams a shard's batches) and the client (which must know how
many batches its shard has, to resume after a failure).

* Order: ``numpy.random.default_rng(derive_seed(seed, epoch)).permutation(n)`` (or ``0..n-1`` without shuffle).
* A sample's augmentation seed is ``derive_seed(seed, epoch, dataset_index)``: it does not depend on how the
  epoch is split, so 1 worker or 8 workers x 4 ranks see the same variant of every sample.
* Shards take every ``shard_count``-th sample of the order, starting at ``shard_index``. Every shard gets the
  same number of samples and batches (DDP hangs otherwise):

  - ``drop_last=False`` (default): the order is padded by repeating its first samples until it divides
    evenly (as torch's DistributedSampler does). Padded samples sit at the end of a shard and are counted in
    each batch's ``padding`` field, so a trainer can drop them. Only the last batch may be short.
  - ``drop_last=True``: each shard keeps ``n // shard_count`` samples rounded down to whole batches; the rest
    of the epoch is skipped. Every batch is full.

  When ``shard_count`` divides ``n`` (and, with ``drop_last``, each shard's share divides into whole batches),
  shards are disjoint and together cover the epoch exactly once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .numbers import Boolean, Int64, Integer, bounded, numbers
from .seeds import derive_seed
from .spec import Spec

Encoding = Literal["raw", "zstd", "jpeg"]
# Bounds inside the type, not on the Field: on ``X | None`` pydantic would write a Field's bound into the JSON
# schema as an unknown keyword (``ge``), which no reader of the schema checks.
Count = bounded(int, ge=0)
Positions = numbers(int, ge=0)
Quality = bounded(int, ge=1, le=100)


class Progress(BaseModel):
    """The samples of an epoch already delivered, as positions in the epoch's order (not shards, batches or
    workers), so that a run can resume on any topology: the first ``prefix`` positions, and ``also`` these.

    When every shard has delivered the same number of batches (DDP ranks step together, and DataLoader takes
    its workers in turn), the delivered positions are exactly a prefix: shards interleave over the order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: Integer = Field(0, ge=0, description="positions [0, prefix) of the epoch's order were delivered")
    also: Positions = Field(default_factory=list, max_length=1_000_000, description="and these positions")

    @classmethod
    def of(cls, positions: np.ndarray) -> Progress:
        """The progress of a set of delivered positions."""
        unique = np.unique(positions)
        in_place = unique == np.arange(len(unique))
        prefix = len(unique) if in_place.all() else int(np.argmin(in_place))
        return cls(prefix=prefix, also=unique[prefix:].tolist())

    def positions(self) -> np.ndarray:
        return np.concatenate([np.arange(self.prefix), np.asarray(self.also, dtype=np.int64)]).astype(np.int64)


class EpochRequest(BaseModel):
    """The body of ``POST /v1/datasets/{name}/epochs``: one shard of one epoch, from ``start_batch`` on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: Spec = Field(default_factory=Spec)
    batch_size: Integer = Field(32, gt=0)
    seed: Int64 = Field(0, ge=0)
    epoch: Integer = Field(0, ge=0)
    shard_index: Integer = Field(0, ge=0)
    shard_count: Integer = Field(1, ge=1)
    start_batch: Integer = Field(0, ge=0, description="first batch of the shard to send (resume point)")
    end_batch: Count | None = Field(None, description="stop before this batch; None = end of the shard")
    shuffle: Boolean = True
    drop_last: Boolean = False
    skip: Progress | None = Field(
        None, description="samples already delivered (a resumed run): the shards split what remains of the epoch"
    )
    encoding: Encoding = Field(
        "raw",
        description="how batch payloads travel: raw uint8 (a Content-Length), zstd (lossless, about half the bytes) "
        "or jpeg (lossy, at quality); see docs/wire-format.md",
    )
    quality: Quality | None = Field(None, description="jpeg quality (default 90); only with encoding jpeg")

    @model_validator(mode="after")
    def _shard_in_range(self) -> EpochRequest:
        if self.shard_index >= self.shard_count:
            raise ValueError(f"shard_index ({self.shard_index}) must be < shard_count ({self.shard_count})")
        if self.end_batch is not None and self.end_batch < self.start_batch:
            raise ValueError("end_batch must be >= start_batch")
        if self.quality is not None and self.encoding != "jpeg":
            raise ValueError(f"quality applies to encoding 'jpeg' only, not {self.encoding!r}")
        return self


class ReplayRequest(BaseModel):
    """The body of ``POST /v1/datasets/{name}/replay``: which variant of which sample to make again, exactly as
    the epoch stream with this ``spec``, ``seed`` and ``epoch`` made it (the shard, batch and position do not
    matter: a sample's variant depends on these and its dataset ``index`` alone)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: Spec = Field(default_factory=Spec)
    seed: Int64 = Field(0, ge=0)
    epoch: Integer = Field(0, ge=0)
    index: Integer = Field(ge=0, description="the sample's index in the dataset, as batch frames list it in 'indices'")


@dataclass(frozen=True)
class Batch:
    """Planned batch: dataset indices, and how many trailing ones are padding (repeats)."""

    number: int
    indices: np.ndarray
    padding: int


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng(derive_seed(seed, epoch)).permutation(n)


def samples_per_shard(n: int, shard_count: int, batch_size: int, drop_last: bool) -> int:
    if drop_last:
        return (n // shard_count) // batch_size * batch_size
    return math.ceil(n / shard_count)


def batches_per_shard(n: int, shard_count: int, batch_size: int, drop_last: bool) -> int:
    """How many batches every shard of an epoch has (the same for all of them)."""
    return math.ceil(samples_per_shard(n, shard_count, batch_size, drop_last) / batch_size)


def remaining_positions(n: int, skip: Progress | None) -> np.ndarray:
    """The positions of an epoch's order still to deliver, in order: all ``n`` of them, less ``skip``."""
    if skip is None:
        return np.arange(n)
    keep = np.ones(n, dtype=bool)
    keep[: min(skip.prefix, n)] = False
    keep[[position for position in skip.also if position < n]] = False
    return np.flatnonzero(keep)


def shard_batch_count(n: int, request: EpochRequest) -> int:
    """How many batches each shard of ``request``'s epoch (less what it skips) has."""
    size = len(remaining_positions(n, request.skip))
    return batches_per_shard(size, request.shard_count, request.batch_size, request.drop_last)


def shard_batches(n: int, request: EpochRequest) -> list[Batch]:
    """The batches of ``request``'s shard, from ``start_batch`` to ``end_batch``.

    The shards split the epoch's order, less the positions ``skip`` says were delivered: a resumed run on
    another topology splits what remains, and every sample keeps its seed, so its bytes are those it would
    have had."""
    sequence = remaining_positions(n, request.skip)
    size = len(sequence)
    per_shard = samples_per_shard(size, request.shard_count, request.batch_size, request.drop_last)
    order = epoch_order(n, request.seed, request.epoch, request.shuffle)
    total = per_shard * request.shard_count
    slots = np.arange(request.shard_index, total, request.shard_count)
    indices = order[np.resize(sequence, max(total, size))[slots]]  # np.resize repeats the sequence: the padding
    count = math.ceil(per_shard / request.batch_size)
    end = count if request.end_batch is None else min(request.end_batch, count)
    batches = []
    for number in range(request.start_batch, end):
        window = slice(number * request.batch_size, (number + 1) * request.batch_size)
        batches.append(Batch(number, indices[window], int(np.count_nonzero(slots[window] >= size))))
    return batches


def progress_after(
    n: int, skip: Progress | None, shard_count: int, batch_size: int, drop_last: bool, delivered: dict[int, int]
) -> Progress:
    """The progress of an epoch whose shards (by index) have each delivered ``delivered[shard]`` batches, after
    ``skip``. Padding is left out: it repeats samples that are delivered in their own place."""
    sequence = remaining_positions(n, skip)
    per_shard = samples_per_shard(len(sequence), shard_count, batch_size, drop_last)
    parts = [skip.positions()] if skip is not None else []
    for shard, batches in delivered.items():
        slots = np.arange(shard, per_shard * shard_count, shard_count)[: batches * batch_size]
        parts.append(sequence[slots[slots < len(sequence)]])
    return Progress.of(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of dataset sample ``index`` in ``epoch``."""
    return derive_seed(seed, epoch, index)
