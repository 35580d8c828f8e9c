"""One shard's epoch streams, each next epoch's opened while the current one drains.

At an epoch boundary a trainer used to wait for a whole round trip before its first batch: its DataLoader
worker asked for the new epoch only once asked itself, and the server then planned the epoch and made its first
batch. The next epoch is predictable (``set_epoch(n + 1)``, as with ``DistributedSampler``), so as soon as the
last batch of epoch n has arrived, while the trainer still works through the batches prefetched ahead of it,
the stream of epoch n + 1 is opened and its first batches are read ahead. If the trainer then asks for exactly
that request, it gets that stream; anything else (another epoch, a resumed position, another topology) drops
it unused. A stream nobody takes within ``idle_timeout`` seconds (after the last epoch of a run) closes by
itself, so the server's work on it stays bounded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from .epoch_batches import EpochBatch, Prefetcher
from .protocol.epochs import EpochRequest

OpenStream = Callable[[EpochRequest], Iterator[EpochBatch]]


class EpochStreams:
    """The batches of each epoch request of one shard, through a :class:`Prefetcher` ``depth`` ahead, the next
    epoch's opened ahead when ``ahead`` is on (``depth`` 0: no thread, nothing ahead)."""

    def __init__(self, open_stream: OpenStream, depth: int, ahead: bool = True, idle_timeout: float = 30.0) -> None:
        self._open, self.depth, self.ahead, self.idle_timeout = open_stream, depth, ahead, idle_timeout
        self._current: EpochRequest | None = None
        self._next: tuple[int, EpochRequest, Prefetcher[EpochBatch]] | None = None  # (pid, request, stream)
        self.reused = 0  # epochs that started on a stream opened ahead

    def batches(self, request: EpochRequest) -> Iterator[EpochBatch]:
        if self.depth <= 0:
            yield from self._open(request)
            return
        taken = self._take(request)
        if taken is None:
            self._current, stream = request, Prefetcher(self._stream(request), self.depth)
        else:
            self._current, stream = taken  # the very request its producer will compare with
            self.reused += 1
        stream.adopt()
        try:
            yield from stream
        finally:
            stream.close()

    def drop(self) -> None:
        """Close the stream opened ahead, if any (in the process that opened it)."""
        taken, self._next = self._next, None
        if taken is not None and taken[0] == os.getpid():
            taken[2].close()

    def _stream(self, request: EpochRequest) -> Iterator[EpochBatch]:
        yield from self._open(request)
        if self.ahead and self._current is request:  # the epoch being trained on: open the next one's stream
            following = request.model_copy(update={"epoch": request.epoch + 1, "start_batch": 0, "skip": None})
            self.drop()
            self._next = os.getpid(), following, Prefetcher(self._stream(following), self.depth, self.idle_timeout)

    def _take(self, request: EpochRequest) -> tuple[EpochRequest, Prefetcher[EpochBatch]] | None:
        """The stream opened ahead when it is ``request``'s; else it is dropped. A forked process does not own
        its parent's (the thread reading it did not come along), so it neither takes nor closes it."""
        taken, self._next = self._next, None
        if taken is None or taken[0] != os.getpid():
            return None
        if taken[1] == request:
            return taken[1], taken[2]
        taken[2].close()
        return None
