"""A real augserve server for tests and benchmarks: ``python -m augserve`` in a subprocess on a free loopback
port, configured through ``AUGSERVE_*`` like any deployment.

A subprocess (not a thread) so that a test can SIGKILL a server mid-stream and start another on the same port
and data directory, the way a crash and a restart happen in production, and so that a benchmark measures the
server's CPU apart from its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """One uvicorn server process; ``settings`` become ``AUGSERVE_*`` environment variables."""

    def __init__(self, data_dir: Path, port: int | None = None, log: Path | None = None, **settings: object) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = log or data_dir.parent / f"server-{self.port}.log"
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ServerProcess:
        env = {
            **os.environ,
            "AUGSERVE_HOST": "127.0.0.1",
            "AUGSERVE_PORT": str(self.port),
            "AUGSERVE_DATA_DIR": str(self.data_dir),
            "AUGSERVE_LOG_LEVEL": "warning",
        }
        env.update({f"AUGSERVE_{key.upper()}": str(value) for key, value in self.settings.items()})
        with open(self.log_path, "ab") as log:
            command = [sys.executable, "-m", "augserve", "serve"]
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server on {self.url} not ready after {timeout}s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flushing: a crash."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=5.0).status_code == 200
        except httpx.TransportError:
            return False


@contextlib.contextmanager
def served(url: str | None, scratch: Path) -> Iterator[str]:
    """The augserve at ``url``, or a fresh one on loopback (data and log under ``scratch``) for as long as the
    block runs: what the examples use, so they run against a server they start or one given with ``--url``."""
    if url is not None:
        yield url
        return
    process = ServerProcess(scratch / "data", log=scratch / "server.log").start()
    try:
        yield process.url
    finally:
        process.stop()
