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

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .seeds import SEED_BITS, derive_seed
from .spec import Spec


class EpochRequest(BaseModel):
    """The body of ``POST /v1/datasets/{name}/epochs``: one shard of one epoch, from ``start_batch`` on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: Spec = Field(default_factory=Spec)
    batch_size: int = Field(32, gt=0)
    seed: int = Field(0, ge=0, lt=1 << SEED_BITS)
    epoch: int = Field(0, ge=0)
    shard_index: int = Field(0, ge=0)
    shard_count: int = Field(1, ge=1)
    start_batch: int = Field(0, ge=0, description="first batch of the shard to send (resume point)")
    end_batch: int | None = Field(None, ge=0, description="stop before this batch; None = end of the shard")
    shuffle: bool = True
    drop_last: bool = False

    @model_validator(mode="after")
    def _shard_in_range(self) -> EpochRequest:
        if self.shard_index >= self.shard_count:
            raise ValueError(f"shard_index ({self.shard_index}) must be < shard_count ({self.shard_count})")
        if self.end_batch is not None and self.end_batch < self.start_batch:
            raise ValueError("end_batch must be >= start_batch")
        return self


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


def shard_batches(n: int, request: EpochRequest) -> list[Batch]:
    """The batches of ``request``'s shard, from ``start_batch`` to ``end_batch``."""
    per_shard = samples_per_shard(n, request.shard_count, request.batch_size, request.drop_last)
    order = epoch_order(n, request.seed, request.epoch, request.shuffle)
    total = per_shard * request.shard_count
    positions = np.arange(request.shard_index, total, request.shard_count)
    indices = np.resize(order, max(total, n))[positions]  # np.resize repeats the order: that is the padding
    count = math.ceil(per_shard / request.batch_size)
    end = count if request.end_batch is None else min(request.end_batch, count)
    batches = []
    for number in range(request.start_batch, end):
        window = slice(number * request.batch_size, (number + 1) * request.batch_size)
        batches.append(Batch(number, indices[window], int(np.count_nonzero(positions[window] >= n))))
    return batches


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of dataset sample ``index`` in ``epoch``."""
    return derive_seed(seed, epoch, index)
