"""SIGTERM drains: readiness 503 at once, new work refused, running streams finish within the deadline or end
with a typed ``shutting_down`` record; then the process exits by itself. A real signal to a real server."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest
from augserve.devserver import ServerProcess
from augserve_client import Client, InternalServerError

pytestmark = pytest.mark.slow
SPEC = {"output": {"size": [512, 512], "format": "npy"}}  # 1.5 MB batches of 2: far more than socket buffers hold


def start(tmp_path: Path, files: list[Path], drain_seconds: float) -> ServerProcess:
    server = ServerProcess(tmp_path / "data", threads=1, drain_seconds=drain_seconds).start()
    with Client(server.url) as client:
        client.upload_dataset("drain", files, labels=list(range(len(files))), progress=False)
    return server


def refused_while_draining(server: ServerProcess) -> None:
    ready = httpx.get(f"{server.url}/readyz", timeout=5)
    assert (ready.status_code, ready.json()) == (503, {"status": "draining"})
    assert httpx.get(f"{server.url}/livez", timeout=5).status_code == 200
    work = httpx.post(f"{server.url}/v1/datasets/drain/epochs", json={"spec": SPEC}, timeout=5)
    assert work.status_code == 503 and work.headers["retry-after"] == "1"
    assert work.json()["code"] == "shutting_down"


def exits_cleanly(server: ServerProcess) -> None:
    assert server.process is not None
    server.process.wait(30)  # by itself, after the drain
    assert "Traceback" not in server.log(), server.log()


def test_a_stream_running_at_sigterm_finishes_while_new_work_is_refused(
    tmp_path: Path, indexed_files: list[Path]
) -> None:
    server = start(tmp_path, indexed_files, drain_seconds=60)
    try:
        with Client(server.url) as client:
            labels = []
            for number, batch in enumerate(client.epoch("drain", SPEC, batch_size=2, retries=0)):
                labels += batch.labels.tolist()
                if number == 0:
                    assert server.process is not None
                    server.process.send_signal(signal.SIGTERM)
                    time.sleep(0.5)
                    refused_while_draining(server)
                time.sleep(0.05)
        assert sorted(labels) == list(range(len(indexed_files)))
        exits_cleanly(server)
    finally:
        server.stop()


def test_a_stream_past_the_deadline_ends_with_shutting_down(tmp_path: Path, indexed_files: list[Path]) -> None:
    server = start(tmp_path, indexed_files, drain_seconds=1)
    try:
        with Client(server.url) as client:
            received = 0
            with pytest.raises(InternalServerError) as ended:
                for number, _ in enumerate(client.epoch("drain", SPEC, batch_size=2, retries=0)):
                    received += 1
                    if number == 0:
                        assert server.process is not None
                        server.process.send_signal(signal.SIGTERM)
                    time.sleep(0.25)  # a slow trainer: the stream outlives the deadline
        assert ended.value.code == "shutting_down" and ended.value.status == 503
        assert 0 < received < len(indexed_files) // 2
        exits_cleanly(server)
        assert "ending 1 stream(s) with shutting_down" in server.log()
    finally:
        server.stop()


def test_a_second_sigterm_stops_at_once(tmp_path: Path, indexed_files: list[Path]) -> None:
    server = start(tmp_path, indexed_files, drain_seconds=600)
    try:
        with Client(server.url) as client:
            batches = iter(client.epoch("drain", SPEC, batch_size=2, retries=0))
            next(batches)
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            server.process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            server.process.wait(30)
            assert time.monotonic() - started < 15  # uvicorn's own shutdown, not the 600 s drain
            batches.close()
    finally:
        server.stop()
