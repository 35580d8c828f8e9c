"""The compute pool takes jobs in turns across owners; cancelled jobs never run; shutdown cancels the queue."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError

import pytest
from augserve.fair_pool import FairPool


def test_a_newcomer_waits_one_turn_not_behind_everything_queued() -> None:
    pool = FairPool(1)
    started, gate, order = threading.Event(), threading.Event(), []

    def job(name: str, wait: bool = False) -> str:
        if wait:
            started.set()
            gate.wait(10)
        order.append(name)
        return name

    try:
        first = pool.submit("heavy", lambda: job("heavy-0", wait=True))  # holds the only thread
        assert started.wait(10)
        heavy = [pool.submit("heavy", lambda index=index: job(f"heavy-{index}")) for index in range(1, 20)]
        light = pool.submit("light", lambda: job("light"))
        gate.set()
        assert light.result(10) == "light" and first.result(10) == "heavy-0"
        assert [future.result(10) for future in heavy] == [f"heavy-{index}" for index in range(1, 20)]
        assert order.index("light") == 2  # heavy-0 was running, heavy-1 had the turn, then light
    finally:
        pool.shutdown()


def test_owners_alternate_while_both_have_work() -> None:
    pool = FairPool(1)
    gate, order = threading.Event(), []
    try:
        pool.submit("gate", lambda: gate.wait(10))
        futures = [pool.submit(owner, lambda owner=owner: order.append(owner)) for owner in "aaaabbbb"]
        gate.set()
        for future in futures:
            future.result(10)
        assert order == list("abababab")
    finally:
        pool.shutdown()


def test_a_cancelled_job_never_runs_and_errors_reach_the_caller() -> None:
    pool = FairPool(1)
    gate, ran = threading.Event(), []
    try:
        pool.submit("a", lambda: gate.wait(10))
        cancelled = pool.submit("a", lambda: ran.append("cancelled"))
        failing = pool.submit("b", lambda: 1 / 0)
        assert cancelled.cancel()
        gate.set()
        with pytest.raises(ZeroDivisionError):
            failing.result(10)
        assert pool.submit("c", lambda: "after").result(10) == "after" and ran == []
    finally:
        pool.shutdown()


def test_shutdown_cancels_what_is_queued() -> None:
    pool = FairPool(1)
    started, gate = threading.Event(), threading.Event()
    running = pool.submit("a", lambda: (started.set(), gate.wait(10))[1])
    assert started.wait(10)
    queued = pool.submit("a", lambda: "never")
    pool.shutdown()
    gate.set()
    assert running.result(10) is True
    with pytest.raises(CancelledError):
        queued.result(10)
    with pytest.raises(RuntimeError):
        pool.submit("a", lambda: None)
