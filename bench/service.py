"""SERVICE: variants/s through the Python client, for /v1/augment and for epoch streaming, per server config.

Both loads run two concurrent client streams (threads, each with its own pinned connection), whatever the
worker count, so the only thing that changes between "1 worker" and "2 workers" is the server. One stream is
served by one worker; two streams let two workers share the load.

* augment: each thread posts ``augment_images`` JPEGs (bytes held in memory) and asks for
  ``augment_variants`` variants of each, raw npy, reading every variant's array.
* epoch: the dataset is registered, then every worker's decoded-image cache is warmed by a full unsharded
  epoch on each connection; a timed window is ``epochs`` epochs, each split into 2 shards, and each stream
  goes through its shard of every epoch back to back, as each LIMIT process goes through its share of every
  pass: waiting for the slower shard at each epoch's end would idle a core in SERVICE that LIMIT keeps busy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from augserve_client import Client

from .common import SEED, SPEC, Config, Rate, measure, timed
from .serving import BenchServer, balanced, spread_clients

STREAMS = 2


def in_parallel(clients: list[Client], work: Callable[[int, Client], int]) -> int:
    """Run ``work(i, client)`` in one thread per client; returns the variants they delivered together."""
    with ThreadPoolExecutor(len(clients)) as pool:
        return sum(pool.map(lambda pair: work(*pair), enumerate(clients)))


def stream_shard(client: Client, dataset: str, config: Config, epoch: int, shard: int, shards: int) -> int:
    """Stream one shard of one epoch; returns the real (non-padding) samples received."""
    received = 0
    batches = client.epoch(
        dataset, SPEC, batch_size=config.batch_size, seed=SEED, epoch=epoch, shard_index=shard, shard_count=shards
    )
    for batch in batches:
        received += len(batch.images) - batch.padding
    return received


def warm(server: BenchServer, dataset: str, config: Config) -> None:
    """Decode every image into every worker's cache: one full epoch per connection, connections spread."""
    with spread_clients(server, server.workers) as clients:
        in_parallel(clients, lambda _, client: stream_shard(client, dataset, config, 0, 0, 1))


def _shard_of(dataset: str, config: Config, epoch: int, shard: int, client: Client) -> int:
    return stream_shard(client, dataset, config, epoch, shard, STREAMS)


class Epochs:
    """Numbers the timed epochs so that no two windows replay the same variants."""

    def __init__(self) -> None:
        self._next = 1
        self._lock = threading.Lock()

    def take(self, count: int) -> list[int]:
        with self._lock:
            taken = list(range(self._next, self._next + count))
            self._next += count
        return taken


def epochs_work(clients: list[Client], dataset: str, config: Config, numbers: list[int]) -> Callable[[], int]:
    """A timed window's work: client ``i`` streams shard ``i`` of every epoch in ``numbers``, back to back."""

    def shards(stream: int, client: Client) -> int:
        return sum(_shard_of(dataset, config, epoch, stream, client) for epoch in numbers)

    return lambda: in_parallel(clients, shards)


def epoch_window(server: BenchServer, dataset: str, config: Config, epochs: Epochs) -> Rate:
    with spread_clients(server, STREAMS) as clients:
        rate = measure(epochs_work(clients, dataset, config, epochs.take(config.epochs)), server)
        rate.extra["spread"] = balanced(server, STREAMS) if server.workers > 1 else True
    return rate


def epoch_rate(server: BenchServer, dataset: str, config: Config) -> dict[str, Any]:
    warm(server, dataset, config)
    epochs = Epochs()
    return timed(lambda: epoch_window(server, dataset, config, epochs), config)


def augment_files(client: Client, files: list[bytes], config: Config, fmt: str, seed: int) -> tuple[int, int]:
    """One /v1/augment call; returns (variants, bytes of encoded variant payloads)."""
    variants = payload = 0
    for variant in client.augment(files, SPEC, variants=config.augment_variants, seed=seed, format=fmt):
        if fmt == "npy":
            variant.image  # noqa: B018 - the array view a caller would use
        variants += 1
        payload += len(variant.data)
    return variants, payload


def request_groups(blobs: list[bytes], config: Config) -> list[list[bytes]]:
    size = config.augment_images
    return [blobs[i : i + size] for i in range(0, len(blobs) - size + 1, size)]


def augment_window(server: BenchServer, groups: list[list[bytes]], config: Config, fmt: str = "npy") -> Rate:
    """Each of the 2 streams posts every other request group once."""
    payload = [0] * STREAMS

    def work_for(index: int, client: Client) -> int:
        delivered = 0
        for number in range(index, len(groups), STREAMS):
            count, size = augment_files(client, groups[number], config, fmt, SEED + number)
            delivered += count
            payload[index] += size
        return delivered

    with spread_clients(server, STREAMS) as clients:
        rate = measure(lambda: in_parallel(clients, work_for), server)
        rate.extra["spread"] = balanced(server, STREAMS) if server.workers > 1 else True
    rate.extra["bytes_per_variant"] = round(sum(payload) / rate.variants)
    return rate


def augment_rate(server: BenchServer, groups: list[list[bytes]], config: Config) -> dict[str, Any]:
    augment_window(server, groups[: STREAMS * 2], config)  # warm pipelines and connections
    return timed(lambda: augment_window(server, groups, config), config)


def read_blobs(files: list[Path]) -> list[bytes]:
    return [path.read_bytes() for path in files]
