"""What a response body holds is given back however the body ends: run to its end, failed, closed early, or
dropped before it ever started (a client that leaves before the first byte: Starlette then never iterates the
body, so a ``finally`` inside it would never run). Checked for each holder: the drain's stream count, the
memory budget's bytes, and a key's stream quota. And concurrent requests never overdraw the budget."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from augserve.budget import MemoryBudget
from augserve.draining import Drain
from augserve.keys import ANONYMOUS, StreamQuota

Holder = Callable[[AsyncIterator[bytes]], tuple[AsyncIterator[bytes], Callable[[], int]]]


async def chunks(fail: bool = False) -> AsyncIterator[bytes]:
    yield b"a"
    if fail:
        raise RuntimeError("a job failed")
    yield b"b"


def drained(body: AsyncIterator[bytes]) -> tuple[AsyncIterator[bytes], Callable[[], int]]:
    drain = Drain(seconds=1)
    return drain.track(body), lambda: drain.streams


def budgeted(body: AsyncIterator[bytes]) -> tuple[AsyncIterator[bytes], Callable[[], int]]:
    budget = MemoryBudget(total=100, per_request=100, wait_seconds=0.1)
    budget.used = 60  # as take(60) leaves it
    return budget.held_for(60, body), lambda: budget.used


def quota(body: AsyncIterator[bytes]) -> tuple[AsyncIterator[bytes], Callable[[], int]]:
    streams = StreamQuota(per_key=4)
    return streams.hold(ANONYMOUS, body), lambda: streams.open[ANONYMOUS.name]


async def to_the_end(body: AsyncIterator[bytes]) -> None:
    assert [chunk async for chunk in body] == [b"a", b"b"]


async def failing(body: AsyncIterator[bytes]) -> None:
    with pytest.raises(RuntimeError):
        async for _ in body:
            pass


async def closed_early(body: AsyncIterator[bytes]) -> None:
    assert await anext(body) == b"a"
    await body.aclose()  # type: ignore[attr-defined]


ENDINGS: dict[str, tuple[bool, Callable[[AsyncIterator[bytes]], Awaitable[None]] | None]] = {
    "to-the-end": (False, to_the_end),
    "failing": (True, failing),
    "closed-early": (False, closed_early),
    "never-started": (False, None),  # the response, and with it the body, dropped unread
}


@pytest.mark.parametrize("holder", [drained, budgeted, quota], ids=["drain", "budget", "quota"])
@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_body_gives_back_what_it_holds_however_it_ends(holder: Holder, ending: str) -> None:
    fail, end = ENDINGS[ending]

    async def run() -> None:
        body, held = holder(chunks(fail))
        assert held() > 0, "held from the moment the response is made"
        if end is None:
            del body
            gc.collect()
        else:
            await end(body)
        await asyncio.sleep(0)
        assert held() == 0

    asyncio.run(run())


def test_concurrent_takes_never_overdraw_the_budget() -> None:
    """Eight requests of 150 bytes against a budget of 400: two get in, the others wait and are told to retry.
    (Checking for room and taking it must not be split by an await, or all eight see the same room.)"""

    async def run() -> None:
        budget = MemoryBudget(total=400, per_request=400, wait_seconds=0.2)
        results = await asyncio.gather(*(budget.take(150) for _ in range(8)), return_exceptions=True)
        assert budget.used == 300 and sum(result is None for result in results) == 2

    asyncio.run(run())
