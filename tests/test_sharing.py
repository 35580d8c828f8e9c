"""One server, several clients: a stalled reader holds bounded memory, a client that leaves stops costing CPU,
and a heavy request does not starve a light one or the metadata routes. A real server, its memory and CPU
read from the process (psutil)."""

from __future__ import annotations

import http.client
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from augserve.devserver import ServerProcess
from augserve_client import Client
from conftest import encode

pytestmark = pytest.mark.slow
MiB = 1 << 20


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, psutil.Process]]:
    server = ServerProcess(tmp_path_factory.mktemp("shared") / "data", threads=2).start()
    assert server.process is not None
    yield server, psutil.Process(server.process.pid)
    server.stop()


def multipart(files: list[tuple[str, bytes]], fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    for name, value in fields.items():
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for filename, data in files:
        body.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        body.write(data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


def open_augment(
    server: ServerProcess, spec: dict, variants: int
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """Send a /v1/augment of one 1x1 image and read only the status line: the body is left unread."""
    body, content_type = multipart(
        [("dot.png", encode(np.full((1, 1, 3), 7, np.uint8), "PNG"))],
        {"spec": json.dumps(spec), "variants": str(variants), "seed": "1"},
    )
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("POST", "/v1/augment", body, {"Content-Type": content_type})
    return connection, connection.getresponse()


HUGE = {"output": {"size": [4000, 4000], "format": "npy"}}  # 48 MB per variant


def test_a_reader_that_never_reads_holds_bounded_memory(shared: tuple[ServerProcess, psutil.Process]) -> None:
    """64 variants of 48 MB, never read: the server computes a few ahead, not all 3 GB."""
    server, process = shared
    before = process.memory_info().rss
    connection, response = open_augment(server, HUGE, variants=64)
    try:
        assert response.status == 200
        peak = before
        for _ in range(30):
            time.sleep(0.1)
            peak = max(peak, process.memory_info().rss)
        assert peak - before < 400 * MiB, f"{(peak - before) / MiB:.0f} MiB computed ahead of a stalled reader"
    finally:
        connection.close()


def test_a_client_that_leaves_stops_costing_cpu(shared: tuple[ServerProcess, psutil.Process]) -> None:
    """64 variants of 48 MB asked, the client gone after the first bytes: the server makes the few its window
    held (counted by its own metrics, whatever the load), not the 64. Reading the first bytes makes sure one
    variant was made, so the count cannot pass by never counting."""
    server, _ = shared
    before = settled(server, "augserve_variants_total{kind=\"augment\"}")
    connection, response = open_augment(server, HUGE, variants=64)
    assert response.status == 200
    assert response.read(512)
    connection.close()
    assert 0 < settled(server, "augserve_variants_total{kind=\"augment\"}") - before <= 8


def test_a_heavy_request_does_not_starve_a_light_one_or_the_metadata(
    shared: tuple[ServerProcess, psutil.Process], photos: list[np.ndarray], tmp_path: Path
) -> None:
    """A heavy stream read as fast as it comes keeps the pool busy; a light request and a listing, sent after it
    started, are both answered before it ends."""
    server, _ = shared
    heavy_spec = {"ops": [{"op": "rotate", "angle": [-30, 30], "p": 1, "interpolation": "lanczos"}]}
    big = np.tile(photos[0], (3, 3, 1))[:1200, :1600]  # 1.9 MP
    heavy_done = threading.Event()

    def heavy() -> None:
        with Client(server.url, timeout=120) as client:
            for _ in client.augment([big] * 2, {**heavy_spec, "output": {"format": "npy"}}, variants=16, seed=3):
                pass
        heavy_done.set()

    thread = threading.Thread(target=heavy)
    thread.start()
    try:
        time.sleep(1.0)
        assert not heavy_done.is_set()
        with Client(server.url, timeout=120) as client:
            light = list(client.augment([np.zeros((8, 8, 3), np.uint8)], {"ops": [{"op": "reflect"}]}, variants=2))
            listing = httpx.get(f"{server.url}/v1/datasets", timeout=120)
        assert len(light) == 2 and listing.status_code == 200
        assert not heavy_done.is_set(), "the heavy request ended first: the test proved nothing"
    finally:
        thread.join(300)


ZERO_PNG = encode(np.zeros((5000, 5000, 3), np.uint8), "PNG")  # 73 KB on the wire, 75 MB decoded
SMALL_OUT = {"output": {"size": [8, 8], "format": "npy"}}


def send_augment(server: ServerProcess, count: int, spec: dict, variants: int = 1) -> http.client.HTTPConnection:
    """Send a /v1/augment of ``count`` zero 5000x5000 PNGs; the answer is left to the caller."""
    body, content_type = multipart(
        [(f"zero{index}.png", ZERO_PNG) for index in range(count)],
        {"spec": json.dumps(spec), "variants": str(variants), "seed": "1"},
    )
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request("POST", "/v1/augment", body, {"Content-Type": content_type})
    return connection


def test_a_client_that_leaves_while_its_images_decode_stops_the_decoding(
    shared: tuple[ServerProcess, psutil.Process],
) -> None:
    """Eight images that take about a core-second each to decode, and the client leaves at once: the decodes
    already running finish, the others never start (counted by the server's own metrics, whatever the load)."""
    server, _ = shared
    before = settled(server, "augserve_decode_seconds_count")
    connection = send_augment(server, 8, SMALL_OUT)
    deadline = time.monotonic() + 60
    while metric(server, "augserve_decode_seconds_count") == before and time.monotonic() < deadline:
        time.sleep(0.1)  # the client stays until the first image is decoded: decoding has begun
    connection.close()
    # the first one, the two pool threads' at most, and one taken as the client left; not all eight
    assert 1 <= settled(server, "augserve_decode_seconds_count") - before <= 4


def metric(server: ServerProcess, sample: str) -> float:
    lines = httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines()
    return next((float(line.split()[-1]) for line in lines if line.startswith(sample + " ")), 0.0)


def settled(server: ServerProcess, sample: str, quiet: float = 3.0) -> float:
    """The metric's value once it has not moved for ``quiet`` seconds (at most a minute)."""
    value, deadline = metric(server, sample), time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(quiet)
        if (now := metric(server, sample)) == value:
            return now
        value = now
    return value


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, psutil.Process]]:
    """A server whose decoded uploads may take 400 MB at once, 300 MB per request, after waiting 3 s."""
    server = ServerProcess(
        tmp_path_factory.mktemp("budgeted") / "data",
        threads=2,
        memory_budget_bytes=400_000_000,
        max_request_decoded_bytes=300_000_000,
        budget_wait_seconds=3,
    ).start()
    assert server.process is not None
    yield server, psutil.Process(server.process.pid)
    server.stop()


def test_a_request_that_would_decode_past_its_limit_is_refused_up_front(
    budgeted: tuple[ServerProcess, psutil.Process],
) -> None:
    connection = send_augment(budgeted[0], 5, SMALL_OUT)  # 375 MB decoded
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 413 and body["code"] == "request_too_large"
    assert body["limit"] == "max_request_decoded_bytes" and body["limit_value"] == 300_000_000


def test_concurrent_decompression_bombs_stay_within_the_memory_budget(
    budgeted: tuple[ServerProcess, psutil.Process],
) -> None:
    """Eight requests of 150 MB decoded at once would take 1.2 GB; the budget lets two in at a time."""
    server, process = budgeted
    before, peak, answers = process.memory_info().rss, process.memory_info().rss, []

    def one() -> None:
        connection = send_augment(server, 2, SMALL_OUT)
        response = connection.getresponse()
        answers.append((response.status, response.read()))
        connection.close()

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        peak = max(peak, process.memory_info().rss)
        time.sleep(0.05)
    # Margin: each of the 2 pool threads holds Pillow's copy of the image it is decoding (75 MB), plus slack.
    assert peak - before < 400_000_000 + 300_000_000, f"{(peak - before) / MiB:.0f} MiB"
    statuses = {status for status, _ in answers}
    assert 200 in statuses and statuses <= {200, 503}
    for status, body in answers:
        assert status == 200 or json.loads(body)["code"] == "server_busy"


def test_a_request_that_cannot_get_the_budget_in_time_is_told_to_retry(
    budgeted: tuple[ServerProcess, psutil.Process],
) -> None:
    server, _ = budgeted
    stalled = send_augment(server, 4, {"output": {"size": [512, 512], "format": "npy"}}, variants=64)
    try:
        assert stalled.getresponse().status == 200  # 300 MB held while its 200 MB of variants go unread
        waiting = send_augment(server, 2, SMALL_OUT)
        response = waiting.getresponse()
        body = json.loads(response.read())
        waiting.close()
        assert response.status == 503 and body["code"] == "server_busy"
        assert response.getheader("Retry-After") == "2" and body["limit"] == "memory_budget_bytes"
    finally:
        stalled.close()
