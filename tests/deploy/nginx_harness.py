"""Run docker/nginx.conf with Debian's nginx on this machine, in front of local replicas on loopback ports.

The compose file and this harness share one nginx.conf. The harness changes only the two blocks fenced by
``# BEGIN harness: NAME`` / ``# END harness: NAME`` comments (the listen address, and the replica list with
Docker's resolver), so every other directive - buffering, timeouts, retries, body limit, keepalive - is the
one that ships. nginx runs unprivileged-friendly: its own prefix directory holds pid, logs and temp files.

Typical use (a test with two augserve processes)::

    with NginxProcess(tmp_path / "nginx", upstream_ports=[a.port, b.port]) as lb:
        httpx.get(f"{lb.url}/healthz")
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parents[2]
NGINX_CONF = REPO / "docker" / "nginx.conf"
INSTALL_HINT = "nginx is not installed: run `make system-deps` (CI installs it through the Makefile)"


class NginxMissing(RuntimeError):
    """No nginx binary: the Makefile's system-deps target installs Debian's package."""


def find_nginx() -> str:
    """Path of the nginx binary. Debian puts it in /usr/sbin, which is not on a non-root user's PATH."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise NginxMissing(INSTALL_HINT)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.25) -> float:
    """Ask ``condition`` until it holds; seconds taken. ``what`` names the condition when it never holds."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(every)
    raise AssertionError(f"{what}: not after {timeout} s")


def replace_block(text: str, name: str, lines: Sequence[str]) -> str:
    """Replace the body of the ``BEGIN/END harness: name`` block, keeping the marker lines and the indent."""
    pattern = re.compile(
        rf"^(?P<indent>[ \t]*)(?P<begin># BEGIN harness: {re.escape(name)}\b[^\n]*\n)"
        rf"(?P<body>.*?)"
        rf"^(?P=indent)(?P<end># END harness: {re.escape(name)}\b[^\n]*)$",
        re.MULTILINE | re.DOTALL,
    )
    matches = list(pattern.finditer(text))
    if len(matches) != 1:
        raise ValueError(f"{NGINX_CONF.name}: expected one 'harness: {name}' block, found {len(matches)}")
    match = matches[0]
    indent = match["indent"]
    block = indent + match["begin"] + "".join(f"{indent}{line}\n" for line in lines) + indent + match["end"]
    return text[: match.start()] + block + text[match.end() :]


def render_conf(upstream_ports: Sequence[int], listen_port: int, source: Path = NGINX_CONF) -> str:
    """docker/nginx.conf with replicas on 127.0.0.1:PORT for each port and nginx on 127.0.0.1:listen_port."""
    if not upstream_ports:
        raise ValueError("at least one upstream port")
    text = source.read_text()
    text = replace_block(text, "replicas", [f"server 127.0.0.1:{port};" for port in upstream_ports])
    return replace_block(text, "listen", [f"listen 127.0.0.1:{listen_port};"])


class NginxProcess:
    """One nginx master in the foreground (``daemon off``) with a private prefix directory.

    ``stop()`` sends SIGQUIT (graceful: open streams finish) then SIGTERM/SIGKILL after ``timeout``.
    """

    def __init__(self, prefix: Path, upstream_ports: Sequence[int], port: int | None = None) -> None:
        self.prefix = prefix
        self.upstream_ports = list(upstream_ports)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf_path = prefix / "nginx.conf"
        self.log_path = prefix / "nginx.log"
        self.pid_path = prefix / "nginx.pid"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self, *flags: str, foreground: bool = False) -> list[str]:
        """nginx's command line. One ``-g`` only: nginx keeps the last of several, silently."""
        globals_ = f"pid {self.pid_path}; error_log {self.log_path} info;"
        if os.geteuid() == 0:
            # As root, workers would switch to `nobody`, which cannot enter a 0700 pytest tmp dir.
            globals_ += " user root;"
        if foreground:
            # The Popen is then the master, so stop() and a crashed test can always reach it.
            globals_ += " daemon off;"
        return [find_nginx(), "-p", f"{self.prefix}/", "-c", str(self.conf_path), "-g", globals_, *flags]

    def write_conf(self) -> Path:
        # Only the prefix, as in a container (the official image has an empty /var/cache/nginx): a temp path
        # whose parent is missing fails here as it does there.
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(render_conf(self.upstream_ports, self.port))
        return self.conf_path

    def check(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` on the rendered file; the result carries nginx's own messages."""
        self.write_conf()
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30, check=False)

    def start(self, timeout: float = 15.0) -> NginxProcess:
        self.write_conf()
        self.pid_path.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(foreground=True), stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}: {self.log()}")
            # nginx binds before it writes its pid file and can still fail in between: wait for both.
            if self.pid_path.exists() and self._accepts():
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"nginx not listening on {self.url} after {timeout}s: {self.log()}")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        for sig in (signal.SIGQUIT, signal.SIGTERM, signal.SIGKILL):
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
                return
            except subprocess.TimeoutExpired:
                continue

    def log(self) -> str:
        """The tail of nginx's error log and access log (both go to one file)."""
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def __enter__(self) -> NginxProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
