"""Small real HTTP/1.1 servers on loopback ports, to observe what nginx does with the traffic it proxies.

These stand in for nothing of augserve's logic: they only record connections and requests and answer in ways
that make a proxy's behaviour visible (which replica served, how many upstream connections, when the first
bytes of a slow stream arrive, what a replica answering 503 causes). Live augserve traffic through the same
nginx is a separate test with two real ``augserve`` processes.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from nginx_harness import free_port

BIG_BYTES = 64 << 20


class Backend:
    """One threaded HTTP/1.1 server; ``release`` gates the second half of ``GET /stream``."""

    def __init__(self, *, fail_flaky: bool = False) -> None:
        self.port = free_port()
        self.fail_flaky = fail_flaky
        self.requests: list[str] = []
        self.connections: set[tuple[str, int]] = set()
        self.release = threading.Event()
        self.big_sent = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Backend:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting and close the listening socket: new connections are then refused."""
        self.server.shutdown()
        self.server.server_close()
        self.release.set()

    def record(self, line: str, client: tuple[str, int]) -> None:
        with self.lock:
            self.requests.append(line)
            self.connections.add(client)


def _handler_for(backend: Backend) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like uvicorn

        def log_message(self, format: str, *args: object) -> None:
            return

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            backend.record(f"GET {self.path}", self.client_address)
            if self.path == "/stream":
                self._stream()
            elif self.path == "/big":
                self._big()
            elif self.path == "/flaky" and backend.fail_flaky:
                self._reply(503, b"not now")
            else:
                self._reply(200, str(backend.port).encode())

        def do_POST(self) -> None:
            backend.record(f"POST {self.path}", self.client_address)
            remaining, received = int(self.headers.get("Content-Length", "0")), 0
            while remaining:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                received, remaining = received + len(chunk), remaining - len(chunk)
            self._reply(200, str(received).encode())

        def _stream(self) -> None:
            """First chunk now, the rest only after the test has seen the first one (or 10 s pass)."""
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"first batch\n", None, b"last batch\n"):
                if part is None:
                    backend.release.wait(10)
                    continue
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

        def _big(self) -> None:
            """BIG_BYTES as fast as the socket takes them, counting what has been written so far."""
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(BIG_BYTES))
            self.end_headers()
            block = bytes(1 << 20)
            for _ in range(BIG_BYTES // len(block)):
                self.wfile.write(block)
                backend.big_sent += len(block)

    return Handler
