"""The soak (bench/soak.py) in its CI length, and the soak's own failure counter.

``python -m bench.soak --ci`` is ``make soak`` for 60 s with 4 trainers instead of 10 minutes with 16: the same
code and the same checks (every epoch exactly once, no 5xx, flat RSS, failover and failback across a SIGKILL).
Its checks on "0 5xx seen by the clients" mean something only if the soak can see a 5xx the client recovered
from, so the counter is tested against a real endpoint that answers 503.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest
from augserve.devserver import ServerProcess, free_port
from augserve_client import Client

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def soak(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/ is the repository's, not an installed distribution's: imported from the checkout."""
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("bench.soak")


@contextmanager
def unavailable() -> Iterator[str]:
    """A real HTTP endpoint that answers every request 503 with augserve's JSON error: a replica gone bad."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            body = b'{"code": "shutting_down", "message": "draining"}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("kind", ["5xx", "connection"])
def test_the_soak_counts_what_the_client_fails_over_from(soak: ModuleType, server: ServerProcess, kind: str) -> None:
    counts: Counter[str] = Counter()
    refused = nullcontext(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with unavailable() if kind == "5xx" else refused as bad, Client([bad, server.url], timeout=10) as client:
        soak.count_failures(client, counts)
        assert isinstance(client.datasets(), list)  # the good replica answered, after the bad one failed
    assert counts == {kind: 1}


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_minute_of_trainers_uploads_and_augment_calls_across_a_replica_kill(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--ci", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,  # 60 s of soak, longer when the restart is slow, plus starting 2 servers and 6 clients
    )
    results = json.loads((tmp_path / "soak.json").read_text())
    failed = [name for name, passed in results["checks"].items() if not passed]
    figures = results["figures"]
    assert not failed, f"failed: {failed}\n{json.dumps(figures, indent=1)}\n{completed.stderr[-3000:]}"
    assert completed.returncode == 0
    assert figures["trainers"]["epochs"] >= 4 and figures["trainers"]["lost"] == figures["trainers"]["duplicated"] == 0
    assert figures["server_5xx"] == 0 and figures["failovers"].get("5xx", 0) == 0
    assert figures["failovers"]["connection"] > 0 and figures["epochs_served_after_restart"] > 0
    assert (tmp_path / "soak.md").read_text().startswith("# Soak")
