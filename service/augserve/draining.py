"""Shutting down without cutting trainers off mid-epoch.

On SIGTERM (a rolling update, a scale-down) the process first drains:

1. at once, readiness answers 503 and new work is refused with ``shutting_down`` (503, ``Retry-After``), so a
   balancer stops sending work here and clients go elsewhere;
2. running streams get ``drain_seconds`` to finish;
3. a stream still running then ends at its next batch with a ``shutting_down`` error record, which the client
   treats like any server failure: it resumes at its next undelivered batch, on another replica;
4. only then does the server itself stop (uvicorn's own shutdown). A second SIGTERM stops it at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from augserve_client.protocol.errors import ErrorCode

from .errors import ServiceError
from .streaming import ending

log = logging.getLogger("augserve.draining")
RETRY_AFTER_SECONDS = 1
CUT_GRACE_SECONDS = 5.0  # after the deadline, for the cut streams to send their error records


class Drain:
    """The drain of one process: whether it started, and the streams still running."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = False
        self.deadline_passed = False
        self._streams = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def streams(self) -> int:
        """Streams running now."""
        return self._streams

    def refuse_new_work(self) -> None:
        if self.started:
            raise shutting_down("the server is shutting down; send this request to another replica")

    def check_stream(self) -> None:
        """Called by a running stream before each batch: past the deadline, the stream ends here."""
        if self.deadline_passed:
            raise shutting_down(f"the server is shutting down and gave this stream {self.seconds:g} s to finish")

    def track(self, body: AsyncIterator[bytes | memoryview]) -> AsyncIterator[bytes | memoryview]:
        """``body``, counted among the running streams from now until it ends, however it ends."""
        self._streams += 1
        self._idle.clear()
        return ending(body, self._ended)

    def _ended(self) -> None:
        self._streams -= 1
        if not self._streams:
            self._idle.set()

    async def run(self, then: Callable[[], None]) -> None:
        """Drain, then call ``then`` (the server's own shutdown)."""
        self.started = True
        log.warning("draining: refusing new work; %d stream(s) have %g s to finish", self._streams, self.seconds)
        try:
            await asyncio.wait_for(self._idle.wait(), self.seconds)
        except TimeoutError:
            self.deadline_passed = True
            log.warning("draining: ending %d stream(s) with shutting_down", self._streams)
            try:
                await asyncio.wait_for(self._idle.wait(), CUT_GRACE_SECONDS)
            except TimeoutError:
                log.warning("draining: %d stream(s) still open; the server's shutdown closes them", self._streams)
        then()


def shutting_down(message: str) -> ServiceError:
    return ServiceError(ErrorCode.SHUTTING_DOWN, message, retry_after=RETRY_AFTER_SECONDS)
