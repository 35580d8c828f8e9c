"""Settings: the defaults that decide how the service uses the machine."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from augserve import settings
from augserve.settings import Settings


def test_by_default_the_workers_share_the_cores_out_among_their_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread per core in every worker oversubscribes the cores (bench: 922 against 1390 variants/s)."""
    monkeypatch.setattr(settings, "usable_cores", lambda: 4)
    assert [Settings(workers=n).pool_threads for n in (1, 2, 3, 4, 8)] == [4, 2, 1, 1, 1]
    assert Settings(workers=2, threads=3).pool_threads == 3  # an explicit count is kept
    assert Settings(workers=2).items_in_flight == 4


def test_threads_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUGSERVE_WORKERS", "2")
    monkeypatch.setenv("AUGSERVE_THREADS", "5")
    assert Settings().pool_threads == 5


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux's")
def test_a_server_pinned_to_one_core_runs_one_thread() -> None:
    """taskset, a cpuset or a replica pinned by a benchmark: the cores are the ones the process may use."""
    code = "from augserve.settings import Settings; print(Settings().pool_threads)"
    pinned = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}),
        env={k: v for k, v in os.environ.items() if not k.startswith("AUGSERVE_")},
    )
    assert pinned.stdout.strip() == "1"
