"""Streaming CPU work to a socket: compute ahead in a bounded pool, send in order, coalesce small writes.

Every streamed response (variant tars, epoch batches) goes through :func:`stream_jobs`. Jobs run in the
process's compute pool, never on the event loop. At most ``inflight`` jobs, and about ``ahead_bytes`` of
results, are computed ahead of the socket, so a slow reader (or one that never reads) applies backpressure
instead of making the server hold a whole epoch, or a few huge variants, in memory. Small results
are joined into writes of up to ``flush_bytes`` (thousands of tiny sends are slow), but whatever is ready is
sent as soon as the next result is not, so the first variant reaches the client before the last is computed.
A buffer of ``flush_bytes`` or more (an epoch batch's pixels) is passed on as it is: joining it would copy
megabytes on the event loop, holding the GIL, for a write that is large enough on its own.

If a job fails after bytes were sent, the status line is long gone: the stream writes what it holds ready
(whole frames or members: a job returns whole ones), then the format's error record (``on_error``), and
raises :class:`StreamBroken`. The response then ends without its final chunk (or short of its
Content-Length; an epoch stream's error frame is sized to fit in what a failure leaves of it, see
``epoch_stream.Plan``) and the server closes the connection. The client sees an error record and an
incomplete stream, never a short result that looks complete.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import Future
from typing import TypeVar

from augserve_client.protocol.wire import Buffer

from .errors import ServiceError

Job = Callable[[], list[Buffer]]
T = TypeVar("T")
log = logging.getLogger("augserve.streaming")


def ending(body: AsyncIterator[T], on_end: Callable[[], None]) -> AsyncIterator[T]:
    """``body``, and ``on_end()`` once when it ends, however it ends: run to its end, failed, closed early, or
    dropped before it ever started. The last is the one a ``finally`` in the body misses: Starlette never starts
    the body of a response whose status line could not be sent (a client that left), so what the response held
    (a drain count, budget bytes, a key's stream) is given back when the body is collected instead."""
    ended = False

    def end() -> None:
        nonlocal ended
        if not ended:
            ended = True
            on_end()

    async def ends() -> AsyncIterator[T]:
        try:
            async for chunk in body:
                yield chunk
        finally:
            end()

    wrapped = ends()
    weakref.finalize(wrapped, end)
    return wrapped


class StreamBroken(Exception):
    """Raised by a stream after it wrote its error record: the response must end without completing (see
    ``routes/responses.py``), and the failure itself was already logged."""


async def stream_jobs(
    jobs: Iterable[Job],
    submit: Callable[[Job], Future[list[Buffer]]],
    *,
    inflight: int,
    ahead_bytes: int,
    flush_bytes: int,
    trailer: Callable[[], list[Buffer]],
    on_error: Callable[[Exception], list[Buffer]],
    check: Callable[[], None] = lambda: None,
) -> AsyncIterator[bytes | memoryview]:
    """Run ``jobs`` through ``submit`` and yield their buffers in order, then ``trailer()``. ``check()`` runs
    before each job's result is awaited; what it raises ends the stream like a failed job.

    The window is ``inflight`` jobs, fewer when the largest result so far says that many would hold more than
    ``ahead_bytes`` (never fewer than one)."""
    todo = iter(jobs)
    pending: deque[asyncio.Future[list[Buffer]]] = deque()
    ready: list[Buffer] = []
    ready_bytes = 0
    largest = 0  # bytes of the largest job result so far

    def refill() -> None:
        window = max(1, min(inflight, ahead_bytes // largest)) if largest else inflight
        while len(pending) < window and (job := next(todo, None)) is not None:
            pending.append(asyncio.wrap_future(submit(job)))

    try:
        refill()
        while pending:
            check()
            if ready and not pending[0].done():
                yield b"".join(ready)
                ready, ready_bytes = [], 0
            parts = await pending.popleft()
            largest = max(largest, sum(len(part) for part in parts))
            refill()
            for part in parts:
                if len(part) < flush_bytes:
                    ready.append(part)
                    ready_bytes += len(part)
                    continue
                if ready:
                    yield b"".join(ready)
                    ready, ready_bytes = [], 0
                yield memoryview(part)
            if ready_bytes >= flush_bytes:
                yield b"".join(ready)
                ready, ready_bytes = [], 0
        yield b"".join([*ready, *trailer()])
    except Exception as error:
        _log_failure(error)
        yield b"".join([*ready, *on_error(error)])  # what is ready is whole frames or members: send them
        raise StreamBroken(error) from error
    finally:
        for future in pending:
            future.cancel()


def _log_failure(error: Exception) -> None:
    """A typed failure (a file that broke after registration, one that left the root) is the client's to act
    on and is logged in one line; anything else is a bug, logged with its traceback."""
    message = "stream failed after it started; closing the connection without its end marker"
    if isinstance(error, ServiceError):
        log.warning("%s: %s: %s", message, error.code.value, error.message)
    else:
        log.exception(message)
