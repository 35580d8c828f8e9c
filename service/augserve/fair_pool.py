"""The compute pool: threads that take work in turn from every stream and request, not first come first served.

A ``ThreadPoolExecutor`` runs jobs in the order they were queued. One heavy request (large images, many
variants, an expensive interpolation) keeps its window of jobs queued at all times, so a small request, or a
second trainer's stream, waits behind all of them, again and again. Here each job belongs to an owner (one
stream or one request), owners with queued jobs stand in a ring, and a free thread takes the next job of the
next owner: with k owners busy, each gets one job in k, however many it has queued, and alone it gets every
thread. Jobs are kept small by their makers (a few variants, or a part of a batch), so a turn is short.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class FairPool:
    def __init__(self, threads: int, name: str = "augserve") -> None:
        self._queues: dict[Hashable, deque[tuple[Callable[[], Any], Future[Any]]]] = {}
        self._ring: deque[Hashable] = deque()  # owners with queued jobs, in turn order
        self._ready = threading.Condition()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True) for index in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, owner: Hashable, job: Callable[[], T]) -> Future[T]:
        """Queue ``job`` behind ``owner``'s earlier jobs; a cancelled future's job never runs."""
        future: Future[T] = Future()
        with self._ready:
            if self._stopped:
                raise RuntimeError("the pool is shut down")
            queue = self._queues.get(owner)
            if queue is None:
                queue = self._queues[owner] = deque()
                self._ring.append(owner)
            queue.append((job, future))
            self._ready.notify()
        return future

    def queued(self) -> int:
        """Jobs waiting for a thread."""
        with self._ready:
            return sum(len(queue) for queue in self._queues.values())

    def shutdown(self) -> None:
        """Stop taking jobs; queued ones are cancelled, running ones finish."""
        with self._ready:
            self._stopped = True
            queues, self._queues = self._queues, {}
            self._ring.clear()
            self._ready.notify_all()
        for queue in queues.values():
            for _, future in queue:
                future.cancel()

    def _next(self) -> tuple[Callable[[], Any], Future[Any]] | None:
        with self._ready:
            while True:
                while not self._ring and not self._stopped:
                    self._ready.wait()
                if self._stopped:
                    return None
                owner = self._ring.popleft()
                queue = self._queues[owner]
                job, future = queue.popleft()
                if queue:
                    self._ring.append(owner)  # its next job waits for the others' turns
                else:
                    del self._queues[owner]
                if future.set_running_or_notify_cancel():
                    return job, future

    def _work(self) -> None:
        while (taken := self._next()) is not None:
            job, future = taken
            try:
                result = job()
            except BaseException as error:  # handed to whoever awaits the future
                future.set_exception(error)
            else:
                future.set_result(result)
