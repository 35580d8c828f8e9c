"""docker/nginx.conf under Debian's real nginx: it parses, streams, balances, retries and keeps connections.

The compose-only lines (Docker DNS discovery) are swapped by nginx_harness for loopback replicas; every other
directive is the shipped one, so what passes here is what the load balancer does in compose.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from augserve.settings import Settings
from local_backends import BIG_BYTES, Backend
from nginx_harness import NGINX_CONF, NginxMissing, NginxProcess, find_nginx, render_conf

Balancer = tuple[NginxProcess, Backend, Backend]
TOKEN = re.compile(r'"[^"]*"|\'[^\']*\'|[{};]|[^\s{};]+')


def directives(text: str) -> list[tuple[tuple[str, ...], str, list[str]]]:
    """(enclosing blocks, name, arguments) for every directive of an nginx config."""
    tokens = TOKEN.findall(re.sub(r"#[^\n]*", "", text))
    found: list[tuple[tuple[str, ...], str, list[str]]] = []
    stack: list[str] = []
    words: list[str] = []
    for token in tokens:
        if token == "{":
            stack.append(" ".join(words))
            words = []
        elif token == "}":
            stack.pop()
        elif token == ";":
            found.append((tuple(stack), words[0], words[1:]))
            words = []
        else:
            words.append(token)
    return found


def values(name: str) -> list[list[str]]:
    return [args for _, found, args in directives(NGINX_CONF.read_text()) if found == name]


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    try:
        return find_nginx()
    except NginxMissing as missing:
        pytest.fail(str(missing))


def test_rendered_conf_passes_nginx_t(nginx_binary: str, tmp_path: Path) -> None:
    result = NginxProcess(tmp_path, upstream_ports=[18001, 18002]).check()
    assert result.returncode == 0, result.stderr


def test_harness_changes_only_the_fenced_blocks() -> None:
    source = NGINX_CONF.read_text()
    assert "server augserve:8000 resolve;" in source and "resolver 127.0.0.11 valid=10s" in source
    rendered = render_conf([18001, 18002], 18080)
    outside = re.compile(r"# BEGIN harness: (\w+).*?# END harness: \1", re.DOTALL)
    assert outside.sub("", rendered) == outside.sub("", source)
    kept = ("server", "resolver", "listen")
    live = [(name, args) for _, name, args in directives(rendered) if name in kept]
    assert live == [
        ("server", ["127.0.0.1:18001"]),
        ("server", ["127.0.0.1:18002"]),
        ("listen", ["127.0.0.1:18080"]),
    ]


def test_streaming_limits_and_balancing_directives() -> None:
    assert values("proxy_buffering") == [["off"]]
    assert values("proxy_request_buffering") == [["off"]]
    assert values("client_max_body_size") == [["256m"]]
    limit = Settings.model_fields["max_request_bytes"].default
    assert limit == 256 << 20, "nginx's body limit must match AUGSERVE_MAX_REQUEST_BYTES"
    for name in ("proxy_read_timeout", "proxy_send_timeout", "send_timeout"):
        assert values(name)[0] == ["1h"], name
    assert values("proxy_http_version") == [["1.1"]] and values("proxy_set_header")[0] == ["Connection", '""']
    assert ["least_conn"] in [[n] for _, n, _ in directives(NGINX_CONF.read_text())]
    assert values("keepalive") == [["32"]]
    retry = values("proxy_next_upstream")[0]
    assert {"error", "timeout", "http_502", "http_503"} <= set(retry) and "non_idempotent" not in retry


@pytest.fixture
def balancer(nginx_binary: str, tmp_path: Path) -> Iterator[tuple[NginxProcess, Backend, Backend]]:
    first, second = Backend().start(), Backend(fail_flaky=True).start()
    lb = NginxProcess(tmp_path / "nginx", upstream_ports=[first.port, second.port])
    try:
        yield lb.start(), first, second
    finally:
        lb.stop()
        first.stop()
        second.stop()


def test_spreads_requests_and_reuses_upstream_connections(balancer: Balancer) -> None:
    lb, first, second = balancer
    with httpx.Client(base_url=lb.url, timeout=10) as client:
        served = {client.get("/who").text for _ in range(20)}
        assert client.get("/healthz").status_code == 200
    assert served == {str(first.port), str(second.port)}, lb.log()
    # 21 requests over keep-alive upstream connections: far fewer connections than requests.
    assert len(first.connections) + len(second.connections) <= 6, (first.connections, second.connections)


def test_first_batch_arrives_before_the_last_is_produced(balancer: Balancer) -> None:
    lb, first, second = balancer
    with httpx.Client(base_url=lb.url, timeout=5.0) as client, client.stream("GET", "/stream") as response:
        chunks = response.iter_raw()
        # The replica produces the rest only once released: a proxy waiting for the end would time out here.
        assert next(chunks).startswith(b"first batch")
        first.release.set()
        second.release.set()
        assert b"".join(chunks).endswith(b"last batch\n")


def test_slow_reader_holds_back_the_replica(balancer: Balancer) -> None:
    """Unbuffered means backpressure: a paused client stops the replica instead of nginx spooling the stream.

    With proxy_buffering on, nginx reads all 64 MiB into its temp files while the client sleeps (measured:
    all of it); off, the replica is held to the socket buffers in between (measured: about 8 MiB).
    """
    lb, first, second = balancer
    with httpx.Client(base_url=lb.url, timeout=30) as client, client.stream("GET", "/big") as response:
        chunks = response.iter_raw()
        received = len(next(chunks))
        written, deadline = -1, time.monotonic() + 10
        while time.monotonic() < deadline:  # until the replica is blocked on full sockets
            time.sleep(0.3)
            now = first.big_sent + second.big_sent  # only one of them serves
            if now and now == written:
                break
            written = now
        assert written <= BIG_BYTES // 2, f"{written >> 20} MiB written while the client read nothing"
        received += sum(len(chunk) for chunk in chunks)
    assert received == BIG_BYTES


def test_retries_a_dead_replica_and_a_503(balancer: Balancer) -> None:
    lb, first, second = balancer
    with httpx.Client(base_url=lb.url, timeout=10) as client:
        flaky = [client.get("/flaky") for _ in range(6)]
        assert [r.status_code for r in flaky] == [200] * 6
        assert any(line == "GET /flaky" for line in second.requests), "nginx never tried the 503 replica"
        second.stop()
        after = [client.get("/who") for _ in range(6)]
    assert [(r.status_code, r.text) for r in after] == [(200, str(first.port))] * 6, lb.log()


def test_uploads_up_to_the_service_limit(balancer: Balancer) -> None:
    lb, _, _ = balancer
    body = bytes(8 << 20)  # past nginx's 1 MiB default
    with httpx.Client(base_url=lb.url, timeout=30) as client:
        response = client.post("/v1/datasets", content=body)
    assert (response.status_code, response.text) == (200, str(len(body)))
    # One byte over 256 MiB is refused from the header alone, before any body is sent.
    with socket.create_connection(("127.0.0.1", lb.port), timeout=10) as sock:
        head = b"POST /v1/datasets HTTP/1.1\r\nHost: lb\r\nContent-Length: %d\r\n\r\n" % ((256 << 20) + 1)
        sock.sendall(head)
        assert sock.recv(64).startswith(b"HTTP/1.1 413")
