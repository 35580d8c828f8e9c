"""Resuming an epoch on another topology (a preempted job restarting with other ranks or workers).

A DataLoader's saved state says how many batches each *shard* delivered, and shards are a function of the
topology (``rank * workers + worker`` of ``world * workers``): it means nothing to a job with another split,
and torchdata's StatefulDataLoader refuses a state saved with another ``num_workers``. So the states of every
rank are turned into the epoch's *progress*: which positions of the epoch's order were delivered
(:class:`~augserve_client.protocol.epochs.Progress`), a small, inspectable JSON document that no topology
enters. A new dataset loaded with it asks the server for what remains of the epoch, split among its own
shards; every sample keeps its seed, so the resumed part has the bytes an uninterrupted epoch would have had.

The document::

    {"version": 1, "seed": 0, "epoch": 3, "shuffle": true, "drop_last": false, "prefix": 96, "also": [97, 99]}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .protocol.epochs import Progress, progress_after

VERSION = 1


def dataset_states(saved: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The dataset states inside what was saved: a StatefulDataLoader's ``state_dict()`` (with or without
    workers), or an AugmentedDataset's own."""
    if "_snapshot" in saved:  # StatefulDataLoader with workers: one dataset state per worker
        return [worker["dataset_state"] for worker in saved["_snapshot"]["_worker_snapshots"].values()]
    if "dataset_state" in saved:  # StatefulDataLoader without workers
        return [saved["dataset_state"]]
    return [saved]


def epoch_progress(
    saved: Iterable[Mapping[str, Any]], *, size: int, batch_size: int, seed: int, shuffle: bool, drop_last: bool
) -> dict[str, Any]:
    """The progress document of the epoch the ``saved`` states (one per rank, all of them) describe."""
    states = [state for one in saved for state in dataset_states(one)]
    if not states:
        raise ValueError("no dataset state in what was saved")
    epochs = {int(state["epoch"]) for state in states}
    skips = {repr(state.get("skip")) for state in states}
    if len(epochs) != 1 or len(skips) != 1 or {state["seed"] for state in states} != {seed}:
        raise ValueError("the states disagree on the epoch, the seed or what was skipped: save them at one step")
    delivered: dict[int, int] = {}
    counts: set[int] = set()
    for state in states:
        for key, batches in state["delivered"].items():
            shard, count = (int(part) for part in str(key).split("/"))
            counts.add(count)
            delivered[shard] = max(delivered.get(shard, 0), int(batches))
    skip = states[0].get("skip")
    skipped = Progress.model_validate(skip) if skip is not None else None
    if len(counts) > 1:
        raise ValueError(f"the states come from different splits of the epoch ({sorted(counts)} shards)")
    if counts:
        progress = progress_after(size, skipped, counts.pop(), batch_size, drop_last, delivered)
    else:
        progress = skipped or Progress.of(np.zeros(0, dtype=np.int64))
    head = {"version": VERSION, "seed": seed, "epoch": epochs.pop(), "shuffle": shuffle, "drop_last": drop_last}
    return {**head, **progress.model_dump()}


def read_progress(document: Mapping[str, Any], *, seed: int, shuffle: bool, drop_last: bool) -> tuple[int, Progress]:
    """(epoch, progress) of a progress document, checked against the dataset it is loaded into."""
    if document.get("version") != VERSION:
        raise ValueError(f"not a progress document of version {VERSION}: {dict(document)!r:.200}")
    mine = {"seed": seed, "shuffle": shuffle, "drop_last": drop_last}
    theirs = {key: document[key] for key in mine}
    if theirs != mine:
        raise ValueError(f"progress saved with {theirs}, this dataset has {mine}: the epoch's order would differ")
    return int(document["epoch"]), Progress(prefix=document["prefix"], also=document["also"])
