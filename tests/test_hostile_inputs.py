"""The hostile-input table: one shared server, one row per hostile input, each with the answer it must get.

Rows cover decompression bombs (PNG, GIF, TIFF, WebP), truncated and mislabelled files, the decoding rule for
CMYK, 16-bit, palette and alpha images (a 200 with the rule's pixels, see ``augserve.codecs``), huge dimensions
in a few bytes, malformed HTTP and multipart, specs with NaN, infinities and extremes, and unicode and traversal
in names. Every refusal is JSON with its code; after the whole table the server still answers, its memory stayed
within its budget, and its log holds no traceback.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
from augserve.devserver import ServerProcess
from augserve_client import Client
from augserve_client.protocol.wire import read_npy, read_tar
from conftest import encode
from hostile_files import BOMBS, FILES, PIXELS, png_rgb, png_zeros, ramp

pytestmark = pytest.mark.slow  # a server of its own; the table itself runs in a few seconds

MAX_PIXELS = 4_000_000
BUDGET = 64 << 20  # memory_budget_bytes: the decoded uploads all requests may hold at once
RSS_MARGIN = 400 << 20  # interpreter, libraries, pool threads and cache: measured ~250 MB at rest
RAW = {"ops": [], "output": {"format": "npy"}}


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


Send = Callable[[ServerProcess], Reply]


@dataclass(frozen=True)
class Case:
    send: Send
    status: int
    code: str | None = None  # the error code; None: a 200 whose pixels must be ``pixels``
    pixels: np.ndarray | None = None
    field: str | None = None  # the field, file or limit the error must name, when it names one
    known: str = ""  # a known defect: the row is expected to fail (strictly) until it is fixed


def _reply(response: httpx.Response) -> Reply:
    return Reply(response.status_code, response.content)


def augment(name: str, data: bytes, spec: object = RAW, **form: str) -> Send:
    def send(server: ServerProcess) -> Reply:
        fields = {"spec": spec if isinstance(spec, str) else json.dumps(spec), **form}
        files = [("images", (name, data))]
        return _reply(httpx.post(f"{server.url}/v1/augment", files=files, data=fields, timeout=60))

    return send


def request(method: str, path: str, **options: Any) -> Send:
    def send(server: ServerProcess) -> Reply:
        return _reply(httpx.request(method, f"{server.url}{path}", timeout=60, **options))

    return send


def raw(data: bytes) -> Send:
    """Bytes straight onto the socket, for requests no HTTP library would send; the reply read until close."""

    def send(server: ServerProcess) -> Reply:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        return Reply(int(head.split(b" ", 2)[1]), body)

    return send


def multipart(content_type: str, body: bytes) -> Send:
    return request("POST", "/v1/augment", content=body, headers={"content-type": content_type})


def epochs(body: str, name: str = "three") -> Send:
    return request(
        "POST", f"/v1/datasets/{name}/epochs", content=body.encode(), headers={"content-type": "application/json"}
    )


def rotate(angle: str) -> str:
    """A spec whose angle is written as raw JSON text: ``NaN`` and ``Infinity`` are what Python's json reads."""
    return json.dumps({**RAW, "ops": [{"op": "rotate", "angle": "ANGLE"}]}).replace('"ANGLE"', angle)


PART = b'--B\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n\r\n'
VALIDATE = b"POST /v1/specs/validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

CASES: dict[str, Case] = {
    # --- decompression bombs and huge dimensions in a few bytes: refused from the header, nothing decoded
    **{
        f"bomb: {name}": Case(augment(name, data), 413, "image_too_large", field="max_pixels")
        for name, data in BOMBS.items()
    },
    # --- truncated, mislabelled, empty, not images
    **{
        f"file: {name}": Case(augment(name, data), status, code, field=name)
        for name, (data, status, code) in FILES.items()
    },
    "file: a PNG whose pixel data ends after 10 of its 64 rows": Case(
        augment("short-rows.png", png_zeros(64, 64, rows=10)), 422, "corrupt_image", field="short-rows.png"
    ),
    "file: an interlaced PNG whose pixel data ends in its last pass": Case(
        augment("short-passes.png", png_rgb(ramp(), interlaced=True, keep=0.9)),
        422,
        "corrupt_image",
        field="short-passes.png",
    ),
    # --- the decoding rule: 200 with the rule's pixels
    **{f"decodes: {name}": Case(augment(name, data), 200, pixels=pixels) for name, (data, pixels) in PIXELS.items()},
    # --- malformed HTTP: a JSON 400 from the protocol, before any route
    "http: garbage request line": Case(raw(b"GARBAGE\r\n\r\n"), 400, "http_error"),
    "http: bad version": Case(raw(b"GET /v1/ops HTTP/9.9\r\nHost: x\r\n\r\n"), 400, "http_error"),
    "http: space in the target": Case(raw(b"GET /v1/ o p s HTTP/1.1\r\nHost: x\r\n\r\n"), 400, "http_error"),
    "http: header without a colon": Case(raw(b"GET /v1/ops HTTP/1.1\r\nHost x\r\n\r\n"), 400, "http_error"),
    "http: NUL in a header": Case(raw(b"GET /v1/ops HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"), 400, "http_error"),
    "http: bad chunk size": Case(
        raw(VALIDATE + b"Transfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n"), 400, "http_error"
    ),
    "http: chunk longer than its size": Case(
        raw(VALIDATE + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}garbage\r\n0\r\n\r\n"), 400, "http_error"
    ),
    "http: duplicate Content-Length": Case(
        raw(VALIDATE + b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}"), 400, "http_error"
    ),
    "http: Content-Length and chunked": Case(
        raw(VALIDATE + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}"), 400, "http_error"
    ),
    "http: negative Content-Length": Case(raw(VALIDATE + b"Content-Length: -1\r\n\r\n{}"), 400, "http_error"),
    # --- malformed multipart
    "multipart: no boundary": Case(multipart("multipart/form-data", PART + b"x\r\n--B--\r\n"), 422, "invalid_request"),
    "multipart: unterminated part": Case(
        multipart("multipart/form-data; boundary=B", PART + b"\x89PNG\r\n"), 422, "invalid_request"
    ),
    "multipart: missing filename": Case(
        multipart(
            "multipart/form-data; boundary=B",
            b'--B\r\nContent-Disposition: form-data; name="images"\r\n\r\nx\r\n--B--\r\n',
        ),
        422,
        "invalid_request",
        field="images",
    ),
    "multipart: no Content-Disposition": Case(
        multipart("multipart/form-data; boundary=B", b"--B\r\nContent-Type: image/png\r\n\r\nx\r\n--B--\r\n"),
        422,
        "invalid_request",
    ),
    "multipart: not multipart at all": Case(multipart("text/plain", b"images=a.png"), 422, "invalid_request"),
    # --- specs with NaN, infinities and extremes, in a form and in a JSON body
    "spec: NaN angle": Case(
        augment("a.png", encode(ramp(), "PNG"), rotate("[NaN, 10]")), 422, "invalid_spec", field="spec.ops[0].angle[0]"
    ),
    "spec: infinite angle": Case(
        augment("a.png", encode(ramp(), "PNG"), rotate("[-Infinity, Infinity]")),
        422,
        "invalid_spec",
        field="spec.ops[0].angle[0]",
    ),
    "spec: 1e308 shift": Case(
        augment("a.png", encode(ramp(), "PNG"), {"ops": [{"op": "shift", "x": [0, 1e308]}]}),
        422,
        "invalid_spec",
        field="spec.ops[0]",  # the op's own check; its message names x
    ),
    "spec: a 10**30 crop": Case(
        augment("a.png", encode(ramp(), "PNG"), {"ops": [{"op": "crop", "size": 10**30}]}),
        422,
        "invalid_spec",
        field="spec.ops[0].size[0]",
    ),
    "spec: NaN probability in an epoch body": Case(
        epochs('{"spec": {"ops": [{"op": "reflect", "p": NaN}]}}'), 422, "invalid_spec", field="spec.ops[0].p"
    ),
    "spec: infinite quality": Case(
        epochs('{"spec": {"output": {"quality": Infinity}}}'), 422, "invalid_spec", field="spec.output.quality"
    ),
    "epoch: 1e308 batch size": Case(epochs('{"batch_size": 1e308}'), 422, "invalid_request", field="batch_size"),
    "epoch: a 2**64 seed": Case(epochs('{"seed": 18446744073709551616}'), 422, "invalid_request", field="seed"),
    "form: variants in exponent notation": Case(
        augment("a.png", encode(ramp(), "PNG"), variants="1e9"), 422, "invalid_request", field="variants"
    ),
    "form: a 30-digit seed": Case(
        augment("a.png", encode(ramp(), "PNG"), seed="9" * 30), 422, "invalid_request", field="seed"
    ),
    "form: a negative seed": Case(
        augment("a.png", encode(ramp(), "PNG"), seed="-1"), 422, "invalid_request", field="seed"
    ),
    # --- unicode and traversal in names
    "name: traversal in a dataset path": Case(request("GET", "/v1/datasets/..%2F..%2Fetc"), 404, "not_found"),
    "name: unicode dataset": Case(
        request("GET", "/v1/datasets/%E5%90%8D%E5%89%8D"), 422, "invalid_request", field="name"
    ),
    "name: NUL in a dataset name": Case(request("DELETE", "/v1/datasets/a%00b"), 422, "invalid_request", field="name"),
    "name: traversal in a new dataset's name": Case(
        request("POST", "/v1/datasets", json={"name": "../x", "folder": "three"}), 422, "invalid_request", field="name"
    ),
    "folder: ../../etc": Case(
        request("POST", "/v1/datasets", json={"name": "up", "folder": "../../etc"}),
        403,
        "path_outside_root",
        field="folder",
    ),
    "folder: absolute": Case(
        request("POST", "/v1/datasets", json={"name": "abs", "folder": "/etc"}),
        403,
        "path_outside_root",
        field="folder",
    ),
    "folder: in and out again": Case(
        request("POST", "/v1/datasets", json={"name": "io", "folder": "three/../../x"}),
        403,
        "path_outside_root",
        field="folder",
    ),
    "folder: unicode, missing": Case(
        request("POST", "/v1/datasets", json={"name": "u", "folder": "名前/\u202egnp"}),
        404,
        "not_found",
        field="folder",
    ),
    "upload: traversal in a file name": Case(
        augment("../../../etc/passwd.png", encode(ramp(), "PNG")), 200, pixels=ramp()
    ),
    "upload: unicode file name, not an image": Case(
        augment("名前\u202e.png", b"hello"), 422, "not_an_image", field="名前\u202e.png"
    ),
    "upload: a 10,000-character file name": Case(augment("n" * 10_000 + ".png", b"hello"), 422, "invalid_request"),
}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the whole table, with a small pixel limit and memory budget so that bombs are cheap to
    refuse and RSS says something; its data root holds a 3-image folder dataset ``three``."""
    base = tmp_path_factory.mktemp("hostile-inputs")
    (base / "root" / "three" / "cls").mkdir(parents=True)
    for index in range(3):
        (base / "root" / "three" / "cls" / f"{index}.png").write_bytes(encode(ramp(16 + index, 20), "PNG"))
    settings = {"max_pixels": MAX_PIXELS, "memory_budget_bytes": BUDGET, "max_request_decoded_bytes": BUDGET}
    server = ServerProcess(base / "data", data_root=base / "root", threads=2, **settings).start()
    with Client(server.url) as client:
        client.register_folder("three", "three")
    yield server
    server.stop()


def variant_pixels(body: bytes) -> np.ndarray:
    members = dict(read_tar(io.BytesIO(body)))
    return read_npy(members["00000_000.npy"])


def rows() -> list[Any]:
    known = {name: pytest.mark.xfail(strict=True, reason=case.known) for name, case in CASES.items() if case.known}
    return [pytest.param(name, id=name, marks=[known[name]] if name in known else []) for name in CASES]


@pytest.mark.parametrize("name", rows())
def test_hostile_input_gets_its_answer(target: ServerProcess, name: str) -> None:
    case = CASES[name]
    reply = case.send(target)
    if case.code is None:
        assert reply.status == 200, reply.body[:300]
        np.testing.assert_array_equal(variant_pixels(reply.body), case.pixels)
        return
    body = reply.json()
    assert (reply.status, body["code"]) == (case.status, case.code), body
    if case.field is not None:
        assert case.field in (body.get("field"), body.get("file"), body.get("limit")), body


def test_after_the_table_the_server_is_healthy_within_budget_and_logged_no_traceback(target: ServerProcess) -> None:
    """Runs after the table (pytest keeps file order): what every row left behind."""
    assert httpx.get(f"{target.url}/readyz", timeout=5).status_code == 200
    assert httpx.get(f"{target.url}/v1/datasets/three", timeout=5).json()["count"] == 3
    assert target.process is not None
    rss = psutil.Process(target.process.pid).memory_info().rss
    assert rss < BUDGET + RSS_MARGIN, f"RSS {rss >> 20} MiB"
    log = Path(target.log_path).read_text(errors="replace")
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-4000:]
