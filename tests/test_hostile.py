"""Hostile input against a real server: each case gets its 4xx JSON naming the field, and afterwards the
server is healthy and its log holds no traceback.

Every case here was once a 500, an error after the 200 was sent, minutes of event-loop work, or pixels from
outside the data root.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from augserve.devserver import ServerProcess
from augserve_client import Client, InvalidRequestError
from conftest import encode
from PIL import Image

SMALL = {"ops": [], "output": {"size": [8, 8], "format": "npy"}}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, photos: list[np.ndarray]) -> Iterator[ServerProcess]:
    """A server of its own (its log is read), with a data root holding a 3-image folder dataset ``three``."""
    base = tmp_path_factory.mktemp("hostile")
    (base / "root" / "three" / "cls").mkdir(parents=True)
    for index in range(3):
        image = Image.fromarray(photos[0][:40, index * 40 : index * 40 + 40])
        image.save(base / "root" / "three" / "cls" / f"{index}.png")
    server = ServerProcess(base / "data", data_root=base / "root", threads=2).start()
    with Client(server.url) as client:
        client.register_folder("three", "three")
    yield server
    server.stop()
    assert "Traceback" not in server.log(), server.log()


def post(server: ServerProcess, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=30)


def augment(server: ServerProcess, spec: dict[str, Any]) -> httpx.Response:
    files = [("images", ("x.png", encode(np.zeros((16, 16, 3), np.uint8), "PNG")))]
    return httpx.post(f"{server.url}/v1/augment", files=files, data={"spec": json.dumps(spec)}, timeout=30)


RATIO = {"op": "crop", "mode": "random_resized", "size": 8}
CASES = {
    "a ratio that overflows the crop": (
        lambda s: augment(s, {"ops": [{**RATIO, "ratio": [1e308, 1e308]}]}),
        (422, "invalid_spec", "spec.ops[0].ratio"),
    ),
    "a subnormal ratio": (
        lambda s: post(s, "/v1/datasets/three/epochs", {"spec": {"ops": [{**RATIO, "ratio": [5e-324, 5e-324]}]}}),
        (422, "invalid_spec", "spec.ops[0].ratio"),
    ),
    "ten trillion shards of a 3-image dataset": (
        lambda s: post(s, "/v1/datasets/three/epochs", {"spec": SMALL, "shard_count": 10**13}),
        (409, "conflict", "shard_count"),
    ),
    "more shards than samples": (
        lambda s: post(s, "/v1/datasets/three/epochs", {"spec": SMALL, "shard_count": 4, "shard_index": 3}),
        (409, "conflict", "shard_count"),
    ),
    "a start past the shard's end": (
        lambda s: post(s, "/v1/datasets/three/epochs", {"spec": SMALL, "batch_size": 1, "start_batch": 10**12}),
        (409, "conflict", "start_batch"),
    ),
    "a NUL byte in a folder name": (
        lambda s: post(s, "/v1/datasets", {"name": "nul", "folder": "three\x00/../../etc"}),
        (422, "invalid_request", "folder"),
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_hostile_input_gets_a_4xx_naming_the_field(hostile: ServerProcess, case: str) -> None:
    send, (status, code, field) = CASES[case]
    started = time.monotonic()
    response = send(hostile)
    assert (response.status_code, response.json()["code"], response.json().get("field")) == (status, code, field)
    assert time.monotonic() - started < 10  # refused up front, not after planning a huge epoch
    assert httpx.get(f"{hostile.url}/healthz", timeout=5).status_code == 200


def test_the_end_of_a_stream_at_the_shards_end_is_an_empty_stream(hostile: ServerProcess) -> None:
    """Resuming at the batch after the last (a client that lost only the end frame) is no error."""
    with Client(hostile.url) as client:
        assert list(client.epoch("three", SMALL, batch_size=1, start_batch=3)) == []


def test_a_file_swapped_for_a_symlink_after_registration_is_never_served(
    hostile: ServerProcess, tmp_path: Path, photos: list[np.ndarray]
) -> None:
    root = Path(hostile.settings["data_root"])
    (root / "swap" / "cls").mkdir(parents=True)
    for index in range(3):
        Image.fromarray(photos[1][:32, index * 32 : index * 32 + 32]).save(root / "swap" / "cls" / f"{index}.png")
    with Client(hostile.url) as client:
        client.register_folder("swap", "swap")
        secret = np.full((32, 32, 3), 251, np.uint8)  # outside the root, in a colour none of the photos has
        Image.fromarray(secret).save(tmp_path / "secret.png")
        (root / "swap" / "cls" / "1.png").unlink()
        (root / "swap" / "cls" / "1.png").symlink_to(tmp_path / "secret.png")
        received = []
        spec = {"output": {"format": "npy"}}
        with pytest.raises(InvalidRequestError) as refused:
            for batch in client.epoch("swap", spec, batch_size=1, shuffle=False, retries=0):
                received.append(batch.images)
    assert refused.value.code == "path_outside_root" and "swap/cls/1.png" in refused.value.message
    assert len(received) == 1 and not any((images == 251).all() for images in received)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{", "not valid JSON (at character 1"),
        (b"\xff", "'utf-8' codec can't decode"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"name": "x", "items": [{"blob": "a", "label": ' + b"9" * 5000 + b"}]}", "Exceeds the limit (4300 digits)"),
    ],
    ids=["truncated", "not UTF-8", "deeply nested", "5000-digit label"],
)
def test_a_body_that_cannot_be_read_as_json_is_named(hostile: ServerProcess, body: bytes, fragment: str) -> None:
    response = httpx.post(
        f"{hostile.url}/v1/datasets", content=body, headers={"content-type": "application/json"}, timeout=30
    )
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"
    assert fragment in response.json()["message"]


def test_a_dataset_of_more_items_than_the_limit_is_refused(tmp_path: Path, photos: list[np.ndarray]) -> None:
    server = ServerProcess(tmp_path / "data", max_dataset_items=3).start()
    try:
        with Client(server.url) as client:
            blob = client.request("POST", "/v1/blobs", files=[("files", ("a.png", encode(photos[0][:8, :8], "PNG")))])
            items = [{"blob": blob.json()["blobs"][0]["sha256"], "label": index} for index in range(4)]
            response = httpx.post(f"{server.url}/v1/datasets", json={"name": "many", "items": items})
        assert response.status_code == 413 and response.json()["limit"] == "max_dataset_items"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with short framing limits, so slow clients are cut in a second or two."""
    limits = {"max_header_bytes": 8192, "header_timeout": 1, "body_min_rate": 1000, "body_grace_seconds": 1}
    server = ServerProcess(tmp_path_factory.mktemp("guarded") / "data", **limits).start()
    yield server
    server.stop()


def answer(sock: socket.socket, seconds: float) -> bytes:
    """What the server sends until it closes the connection (or ``seconds`` pass)."""
    sock.settimeout(seconds)
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_headers_over_the_limit_get_431_and_a_closed_connection(guarded: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(b"GET /v1/ops HTTP/1.1\r\nHost: x\r\n" + b"X-Filler: " + b"a" * 60_000 + b"\r\n\r\n")
        reply = answer(sock, 10)
    assert reply.startswith(b"HTTP/1.1 431 ") and b"max_header_bytes" in reply


def test_headers_that_never_end_get_408(guarded: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(b"GET /v1/ops HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        started = time.monotonic()
        reply = answer(sock, 10)
    assert reply.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < 5


def test_a_connection_that_sends_nothing_is_closed(guarded: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        started = time.monotonic()
        assert answer(sock, 10).startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < 5


def test_a_body_trickling_in_is_cut(guarded: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
        sock.sendall(b"POST /v1/specs/validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        sock.sendall(b"Content-Length: 100000\r\n\r\n")
        sock.settimeout(0.2)
        started, reply = time.monotonic(), b""
        while time.monotonic() - started < 8 and not reply:
            with contextlib.suppress(OSError):
                sock.sendall(b" " * 20)  # 100 B/s
            with contextlib.suppress(TimeoutError):
                reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 408 ") and b"body_min_rate" in reply


def test_a_guarded_server_still_serves_ordinary_requests(guarded: ServerProcess) -> None:
    assert httpx.get(f"{guarded.url}/v1/ops", headers={"X-Trace": "t" * 4000}).status_code == 200
    assert "Traceback" not in guarded.log()
