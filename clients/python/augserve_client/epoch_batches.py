"""Epoch batches as plain numpy arrays, for any framework: streamed, retried, resumed, prefetched.

:class:`EpochBatches` survives a server crash or a load balancer moving it to another replica: on a broken
connection, a truncated stream or a 5xx it backs off and asks again from the next batch it has not delivered.
Because a batch is a pure function of (dataset, spec, seed, epoch, shard, batch number), the retried stream
continues exactly where the broken one stopped: nothing is lost or repeated.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .connections import RETRYABLE
from .protocol.datasets import dataset_path
from .protocol.encodings import codec
from .protocol.epochs import EpochRequest
from .protocol.errors import RateLimitedError, stream_error
from .protocol.targets import BatchTargets
from .protocol.wire import Allocate, batch_array, batch_parts, empty_bytes, read_frames

if TYPE_CHECKING:
    from .client import Client

T = TypeVar("T")


@dataclass(frozen=True)
class EpochBatch:
    """One batch: ``images`` is (N, H, W, C) uint8; the last ``padding`` samples repeat earlier ones.
    ``wire_bytes``: the payload bytes it took on the wire (its pixels' size when raw, less when encoded).
    ``targets``: for a dataset with masks, boxes or keypoints, theirs, moved with the images (else None)."""

    number: int
    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    seeds: list[int]
    padding: int
    wire_bytes: int = 0
    targets: BatchTargets | None = None


def stream_epoch(
    client: Client, dataset: str, request: EpochRequest, allocate: Allocate = empty_bytes
) -> Iterator[EpochBatch]:
    """One HTTP stream of batches, no retry; raises if it ends before its end frame."""
    codec(request.encoding)  # a missing package fails here, in one line, before anything is sent
    body = request.model_dump(mode="json")
    if request.encoding == "raw":  # a raw request's body is what it was before encodings (older servers take it)
        del body["encoding"], body["quality"]
    path = dataset_path(dataset) + "/epochs"
    with client.stream("POST", path, json=body, prefer=request.shard_index, dataset=dataset) as (response, _):
        for header, payload in read_frames(response, allocate):
            if header["kind"] == "error":
                raise stream_error(header)
            if header["kind"] == "batch":
                yield _batch(header, payload)


def _batch(header: dict[str, Any], payload: np.ndarray) -> EpochBatch:
    return EpochBatch(
        number=int(header["batch"]),
        images=batch_array(header, payload),
        labels=np.asarray(header["labels"], dtype=np.int64),
        indices=np.asarray(header["indices"], dtype=np.int64),
        seeds=list(header["seeds"]),
        padding=int(header["padding"]),
        wire_bytes=int(header["nbytes"]),
        targets=BatchTargets.from_parts(batch_parts(header, payload)),
    )


class EpochBatches(Iterable[EpochBatch]):
    """The batches of one shard of one epoch, resumed from ``request.start_batch``, with retries.

    ``next_batch`` is the first batch not yet delivered: keep it to resume after a trainer restart.
    """

    def __init__(
        self,
        client: Client,
        dataset: str,
        request: EpochRequest,
        retries: int = 8,
        backoff: float = 0.25,
        max_backoff: float = 8.0,
        allocate: Allocate = empty_bytes,
    ) -> None:
        self.client = client
        self.dataset = dataset
        self.request = request
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.allocate = allocate
        self.next_batch = request.start_batch
        codec(request.encoding)  # fail at once, not at the first batch, when the encoding's package is missing

    def __iter__(self) -> Iterator[EpochBatch]:
        failures = 0
        while True:
            try:
                request = self.request.model_copy(update={"start_batch": self.next_batch})
                for batch in stream_epoch(self.client, self.dataset, request, self.allocate):
                    failures = 0
                    self.next_batch = batch.number + 1
                    yield batch
                return
            except RateLimitedError as limited:  # this key has too many streams open: wait as told
                failures += 1
                if failures > self.retries:
                    raise
                time.sleep(min(self.max_backoff, limited.retry_after))
            except RETRYABLE:
                failures += 1
                if failures > self.retries:
                    raise
                if not self.client.replicas.any_healthy():  # else the next endpoint takes over at once
                    time.sleep(min(self.max_backoff, self.backoff * 2 ** (failures - 1)))


_DONE = object()


class Prefetcher(Iterator[T]):
    """Iterate ``items`` in a background thread, up to ``depth`` ahead, so the consumer rarely waits.

    The thread starts at once, so a stream can be opened before anyone asks for it (the next epoch's, opened
    while this one drains: :class:`augserve_client.torch_dataset.AugmentedDataset`). Errors are re-raised in the
    consumer. ``close()`` stops the thread and closes ``items`` (a generator closes its stream). With
    ``idle_timeout``, a thread whose batches nobody takes for that long stops by itself, until :meth:`adopt`."""

    def __init__(self, items: Iterable[T], depth: int, idle_timeout: float | None = None) -> None:
        self._items = items
        self._slots: queue.Queue[Any] = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self.idle_timeout = idle_timeout
        self._thread = threading.Thread(target=self._produce, name="augserve-prefetch", daemon=True)
        self._thread.start()

    def __next__(self) -> T:
        item = self._slots.get()
        if item is _DONE:
            self._slots.put(_DONE)  # asked again: still done
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def adopt(self) -> None:
        """Someone consumes this now: wait for them however long they take."""
        self.idle_timeout = None

    def close(self) -> None:
        self._stop.set()

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as error:  # handed to the consumer, which re-raises it
            self._put(error)
        finally:
            close = getattr(self._items, "close", None)
            if self._stop.is_set() and close is not None:
                close()

    def _put(self, item: Any) -> bool:
        """Queue ``item`` unless stopped (or idle past ``idle_timeout``) first; False when the thread must end."""
        waited = 0.0
        while not self._stop.is_set():
            try:
                self._slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                waited += 0.1
                if self.idle_timeout is not None and waited >= self.idle_timeout:
                    self._stop.set()
        return False
