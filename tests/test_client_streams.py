"""The client's stream reading against a fake peer: a raw socket that sends what a failing or impatient server
would (streams cut short, error members, idle connections closed, variants trickling in); and which calls are sent
again after a proxy error (tests/deploy/test_proxy_retries.py sends them through a real nginx)."""

from __future__ import annotations

import io
import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from augserve_client import Client, InternalServerError, LimitExceededError, ProtocolError
from augserve_client.connections import retryable_call
from augserve_client.protocol.wire import END_OF_ARCHIVE, ERROR_MEMBER, json_bytes, npy_parts, tar_member

CROP = {"ops": [{"op": "reflect"}, {"op": "crop", "size": [64, 80]}]}  # checked locally; the peer ignores it


class FakePeer:
    """A raw HTTP/1.1 peer: on each of ``connections`` connections it reads one request, sends ``parts`` and
    closes the connection. Not our server: a broken one. Between parts it waits (up to 2 s) for ``resume``, so a
    test can check what the client handed over before the rest was sent."""

    def __init__(self, *parts: bytes, resume: threading.Event | None = None, connections: int = 1) -> None:
        self.parts = parts
        self.resume = resume or threading.Event()
        self.waited_out = False
        self.connections, self.accepted = connections, 0
        self.requests: list[bytes] = []  # each request's line and headers, as received
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for _ in range(self.connections):
            connection, _ = self.listener.accept()
            self.accepted += 1
            with connection:
                self.requests.append(self._read_request(connection))
                for index, part in enumerate(self.parts):
                    if index and not self.resume.wait(2):
                        self.waited_out = True
                    connection.sendall(part)

    @staticmethod
    def _read_request(connection: socket.socket) -> bytes:
        received = b""
        while b"\r\n\r\n" not in received:
            received += connection.recv(65536)
        head, body = received.split(b"\r\n\r\n", 1)
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        while len(body) < length:
            body += connection.recv(65536)
        return head

    def close(self) -> None:
        self.resume.set()
        self.listener.close()
        self.thread.join(10)


def tar_of(*members: tuple[str, bytes]) -> bytes:
    return b"".join(bytes(b) for name, data in members for b in tar_member(name, [data]))


VARIANT = (
    ("00000_000.npy", b"".join(bytes(p) for p in npy_parts(np.zeros((2, 2, 3), np.uint8)))),
    ("00000_000.json", json_bytes({"seed": 1, "image": 0, "variant": 0})),
)

SECOND = ("00000_001.npy", VARIANT[0][1]), ("00000_001.json", json_bytes({"seed": 2, "image": 0, "variant": 1}))


def http_response(body: bytes, headers: dict[str, str]) -> bytes:
    base = {"Content-Type": "application/x-tar", "X-Augserve-Seed": "1", "X-Augserve-Count": "2"}
    lines = [f"{key}: {value}" for key, value in {**base, **headers}.items()]
    return ("HTTP/1.1 200 OK\r\n" + "\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


BROKEN = {
    "content-length cut short": (
        http_response(tar_of(*VARIANT), {"Content-Length": str(len(tar_of(*VARIANT)) * 2)}),
        ProtocolError,
        "incomplete",
    ),
    "chunked body cut mid-chunk": (
        http_response(chunk(tar_of(*VARIANT)) + b"4000\r\n" + bytes(100), {"Transfer-Encoding": "chunked"}),
        ProtocolError,
        "broke off",
    ),
    "no end-of-archive marker": (
        http_response(tar_of(*VARIANT), {"Connection": "close"}),
        ProtocolError,
        "end-of-archive",
    ),
    "fewer variants than announced": (
        http_response(tar_of(*VARIANT) + END_OF_ARCHIVE, {"Connection": "close"}),
        ProtocolError,
        "announced 2 variants and sent 1",
    ),
    "not a tar": (
        http_response(b"{}", {"Content-Type": "application/json", "Content-Length": "2"}),
        ProtocolError,
        "expected a tar stream",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_a_broken_stream_raises_instead_of_ending_quietly(case: str) -> None:
    response, error, message = BROKEN[case]
    peer = FakePeer(response)
    try:
        with Client(peer.url, timeout=10) as broken:
            received = []
            with pytest.raises(error, match=message):
                for variant in broken.augment([np.zeros((2, 2, 3), np.uint8)], CROP, seed=1):
                    received.append(variant)
            assert len(received) <= 1  # what arrived before the break is still delivered
    finally:
        peer.close()


def test_a_peer_that_answers_with_an_error_body(tmp_path: Path) -> None:
    body = json.dumps({"code": "too_many_variants", "message": "no", "limit": "max_variants"}).encode()
    head = f"HTTP/1.1 422 Unprocessable Entity\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    peer = FakePeer(head.encode() + b"\r\n\r\n" + body)
    try:
        with Client(peer.url, timeout=10) as other, pytest.raises(LimitExceededError) as caught:
            other.augment([io.BytesIO(b"").getvalue() or b"x"], CROP)
        assert caught.value.limit == "max_variants" and caught.value.status == 422
    finally:
        peer.close()


def test_a_stream_on_an_idle_connection_the_server_closed_is_sent_again() -> None:
    """Keep-alive connections wait idle between streams, and servers close idle ones (uvicorn after 5 s): the
    next stream goes out again on a new connection instead of failing."""
    whole = chunk(tar_of(*VARIANT, *SECOND) + END_OF_ARCHIVE) + b"0\r\n\r\n"
    peer = FakePeer(http_response(whole, {"Transfer-Encoding": "chunked"}), connections=2)
    try:
        with Client(peer.url, timeout=10) as client:
            for _ in range(2):  # the peer closes the first connection once the first stream is complete
                stream = client.augment([np.zeros((2, 2, 3), np.uint8)], CROP, seed=1)
                assert [variant.name for variant in stream] == ["00000_000.npy", "00000_001.npy"]
        assert peer.accepted == 2
    finally:
        peer.close()


def test_an_error_member_mid_stream_raises_the_servers_error() -> None:
    """The client reads members as they arrive, so the error member is read before the connection drops."""
    error = tar_of((ERROR_MEMBER, json_bytes({"code": "internal", "message": "boom"})))
    peer = FakePeer(
        http_response(chunk(tar_of(*VARIANT)) + chunk(error), {"Transfer-Encoding": "chunked"})
    )  # and then the connection drops without the last chunk, as uvicorn does when the stream raises
    try:
        with Client(peer.url, timeout=10) as broken, pytest.raises(InternalServerError, match="boom") as caught:
            list(broken.augment([np.zeros((2, 2, 3), np.uint8)], CROP, seed=1))
        assert caught.value.code == "internal"
    finally:
        peer.close()


def test_each_variant_is_handed_over_as_soon_as_it_has_arrived() -> None:
    """The client parses as bytes arrive: a small variant is not held back until more data comes."""
    peer = FakePeer(
        http_response(chunk(tar_of(*VARIANT)), {"Transfer-Encoding": "chunked"}),
        chunk(tar_of(*SECOND) + END_OF_ARCHIVE) + b"0\r\n\r\n",
    )
    try:
        with Client(peer.url, timeout=10) as slow:
            stream = slow.augment([np.zeros((2, 2, 3), np.uint8)], CROP, seed=1)
            first = next(stream)
            handed_over_early = not peer.waited_out  # the peer was still holding the second variant back
            peer.resume.set()
            assert [first.name, *(variant.name for variant in stream)] == ["00000_000.npy", "00000_001.npy"]
        assert handed_over_early
    finally:
        peer.close()


def test_one_configuration_reaches_calls_and_streams_alike() -> None:
    """Plain calls go through httpx and streams through http.client: a header, the base URL's path and the
    user agent set once on the Client arrive the same way on both."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    stream = http_response(tar_of(*VARIANT, *SECOND) + END_OF_ARCHIVE, {"Connection": "close"})
    call_peer, stream_peer = FakePeer(answer), FakePeer(stream)
    try:
        heads = []
        for peer in (call_peer, stream_peer):
            with Client(f"{peer.url}/augserve", headers={"Authorization": "Bearer k-123"}) as client:
                if peer is call_peer:
                    client.validate_spec(CROP)
                else:
                    assert len(list(client.augment([np.zeros((4, 4, 3), np.uint8)], CROP))) == 2
            heads.append(peer.requests[0].decode().lower().split("\r\n"))
    finally:
        call_peer.close()
        stream_peer.close()
    (call_line, *call_headers), (stream_line, *stream_headers) = heads
    assert call_line.startswith("post /augserve/v1/specs/validate ")
    assert stream_line.startswith("post /augserve/v1/augment ")
    for wanted in ("authorization: bearer k-123", next(h for h in call_headers if h.startswith("user-agent:"))):
        assert wanted in call_headers and wanted in stream_headers


SENT_AGAIN_AFTER_A_PROXY_ERROR = {
    ("GET", "/v1/datasets/pets"): True,
    ("DELETE", "/v1/datasets/pets"): True,  # the same state after two
    ("POST", "/v1/specs/validate"): True,
    ("POST", "/v1/augment"): True,
    ("POST", "/v1/blobs/missing"): True,
    ("POST", "/v1/blobs"): True,  # stored by content
    ("POST", "/v1/datasets"): True,  # 200 when the same content is already there
    ("POST", "/augserve/v1/datasets/pets/epochs"): True,  # under a base path too
    ("POST", "/v1/datasets/pets"): False,  # no such route: not known to be idempotent
    ("POST", "/v1/blobs/x/y"): False,
    ("PATCH", "/v1/datasets/pets"): False,
    ("GET", "/healthz"): False,  # probes report the state now
    ("GET", "/readyz"): False,
    ("GET", "/augserve/livez"): False,
}


@pytest.mark.parametrize(("method", "path"), list(SENT_AGAIN_AFTER_A_PROXY_ERROR))
def test_only_idempotent_calls_that_are_not_probes_are_sent_again_after_a_proxy_error(method: str, path: str) -> None:
    assert retryable_call(method, path) is SENT_AGAIN_AFTER_A_PROXY_ERROR[(method, path)]
