"""Memory for decoded uploads, budgeted: per request, and for the whole process.

An upload's size says little about its pixels: twelve all-zero 6000x6000 PNGs are 0.4 MB on the wire and
1.3 GB decoded. ``max_pixels`` guards one image; this guards what a request, and all requests at once, may
hold. Every file's decoded size is read from its header before anything is decoded:

- a request whose files would decode to more than ``max_request_decoded_bytes`` is refused (413);
- otherwise it takes its bytes from the process's ``memory_budget_bytes`` before decoding, and gives them back
  when its stream ends; while the budget is taken it waits, up to ``budget_wait_seconds``, then is refused
  with ``server_busy`` (503, Retry-After), so memory stays bounded however many such requests arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from augserve_client.protocol.errors import ErrorCode

from .errors import ServiceError, limit_exceeded
from .streaming import ending

RETRY_AFTER_SECONDS = 2


class MemoryBudget:
    def __init__(self, total: int, per_request: int, wait_seconds: float) -> None:
        self.total = total
        self.per_request = per_request
        self.wait_seconds = wait_seconds
        self.used = 0
        self._freed = asyncio.Event()  # set by every give_back
        self._loop = asyncio.get_running_loop()  # made in the server's lifespan

    async def take(self, size: int) -> None:
        """Take ``size`` bytes, waiting for them if other requests hold them."""
        if size > self.per_request:
            message = f"the images would decode to {size} bytes"
            raise limit_exceeded(ErrorCode.REQUEST_TOO_LARGE, "max_request_decoded_bytes", self.per_request, message)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_seconds
        # The check and the taking happen with no await between them: two requests cannot both see room that
        # only one of them fits in. Every give_back wakes every waiter, and each checks again.
        while self.used + size > self.total:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ServiceError(
                    ErrorCode.SERVER_BUSY,
                    f"the server's memory budget for decoded images is in use; retry in {RETRY_AFTER_SECONDS} s",
                    limit="memory_budget_bytes",
                    limit_value=self.total,
                    retry_after=RETRY_AFTER_SECONDS,
                )
            self._freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), remaining)
        self.used += size

    def give_back(self, size: int) -> None:
        """Plain, not awaited: a body dropped unread gives its bytes back from a finalizer, which the garbage
        collector may run in any thread; the waiters are woken in the event loop's."""
        self.used -= size
        self._loop.call_soon_threadsafe(self._freed.set)

    def held_for(self, size: int, body: AsyncIterator[bytes | memoryview]) -> AsyncIterator[bytes | memoryview]:
        """``body``, with ``size`` bytes given back when it ends, however it ends."""
        return ending(body, lambda: self.give_back(size))
