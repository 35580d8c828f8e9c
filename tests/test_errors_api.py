"""Every bad input to the real server gets its 4xx JSON error (status, stable code, and the field, file or
limit it is about), and the server is still healthy and correct afterwards (the last test of this module)."""

from __future__ import annotations

import http.client
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from augserve.devserver import ServerProcess
from augserve_client.protocol.errors import ErrorCode
from augserve_client.protocol.wire import npy_parts, read_npy, read_tar
from conftest import encode
from PIL import Image

# The session server's limits (tests/conftest.py): 4 MB per request, 3 MB per file, 2 Mpx, 8 images, 16 variants.
SMALL = encode(np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8), "PNG")
JPEG = encode(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8), "JPEG")


def npy(array: np.ndarray) -> bytes:
    return b"".join(bytes(part) for part in npy_parts(array))


def tiff_float() -> bytes:
    return encode(Image.fromarray(np.zeros((4, 4), np.float32), mode="F"), "TIFF")


@dataclass
class Bad:
    """One bad request and the error it must get."""

    name: str
    status: int
    code: str
    expect: dict[str, Any] = field(default_factory=dict)  # exact values of field / file / limit
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    data: dict[str, str] | None = None
    content: bytes | None = None
    headers: dict[str, str] | None = None

    def send(self, url: str) -> httpx.Response:
        if self.content is not None:
            return httpx.post(f"{url}/v1/augment", content=self.content, headers=self.headers, timeout=30)
        return post_augment(url, self.files if self.files is not None else [image("small.png")], self.data or {})


def post_augment(url: str, files: list[tuple[str, tuple[str, bytes, str]]], data: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{url}/v1/augment", files=files, data={"spec": "{}", **data}, timeout=30)


def image(name: str, content: bytes = SMALL) -> tuple[str, tuple[str, bytes, str]]:
    return ("images", (name, content, "application/octet-stream"))


def spec(value: Any) -> dict[str, str]:
    return {"spec": value if isinstance(value, str) else json.dumps(value)}


BAD_INPUTS = [
    Bad("spec is not JSON", 422, "invalid_spec", {"field": "spec"}, data=spec("{oops")),
    Bad(
        "spec range",
        422,
        "invalid_spec",
        {"field": "spec.ops[0].angle"},
        data=spec({"ops": [{"op": "rotate", "angle": [10, 5]}]}),
    ),
    Bad("spec unknown op", 422, "invalid_spec", {"field": "spec.ops[0]"}, data=spec({"ops": [{"op": "blur"}]})),
    Bad(
        "spec unknown field",
        422,
        "invalid_spec",
        {"field": "spec.ops[0].diagonal"},
        data=spec({"ops": [{"op": "reflect", "diagonal": True}]}),
    ),
    Bad("spec version", 422, "invalid_spec", {"field": "spec.version"}, data=spec({"version": 2})),
    Bad("spec p", 422, "invalid_spec", {"field": "spec.ops[0].p"}, data=spec({"ops": [{"op": "reflect", "p": 2}]})),
    Bad(
        "spec size",
        422,
        "invalid_spec",
        {"field": "spec.ops[0].size[0]"},
        data=spec({"ops": [{"op": "crop", "size": 0}]}),
    ),
    Bad(
        "spec fill",
        422,
        "invalid_spec",
        {"field": "spec.ops[0].fill"},
        data=spec({"ops": [{"op": "rotate", "fill": 256}]}),
    ),
    Bad(
        "spec NaN",
        422,
        "invalid_spec",
        {"field": "spec.ops[0].x[0]"},
        data=spec('{"ops": [{"op": "shift", "x": [NaN, 0]}]}'),
    ),
    Bad("spec nested too deep", 422, "invalid_spec", {"field": "spec"}, data=spec("[" * 100_000)),
    Bad(
        "spec is a file",
        422,
        "invalid_request",
        {"field": "spec"},
        files=[image("a.png"), ("spec", ("s.json", b"{}", "x"))],
    ),
    Bad("zero-byte file", 422, "empty_file", {"file": "empty.png"}, files=[image("empty.png", b"")]),
    Bad("truncated file", 422, "corrupt_image", {"file": "cut.jpg"}, files=[image("cut.jpg", JPEG[: len(JPEG) // 2])]),
    Bad("not an image", 422, "not_an_image", {"file": "notes.txt"}, files=[image("notes.txt", b"dear diary")]),
    Bad(
        "unsupported format",
        415,
        "unsupported_format",
        {"file": "icon.ico"},
        files=[image("icon.ico", encode(np.zeros((16, 16, 3), np.uint8), "ICO"))],
    ),
    Bad("unsupported mode", 415, "unsupported_mode", {"file": "f.tif"}, files=[image("f.tif", tiff_float())]),
    Bad(
        "npy without pixels",
        422,
        "empty_file",
        {"file": "e.npy"},
        files=[image("e.npy", npy(np.zeros((0, 4, 3), np.uint8)))],
    ),
    Bad(
        "one bad file among good",
        422,
        "not_an_image",
        {"file": "bad.png"},
        files=[image("a.png"), image("bad.png", b"x" * 99), image("c.png")],
    ),
    Bad(
        "too many images",
        413,
        "too_many_images",
        {"limit": "max_images", "field": "images", "limit_value": 8},
        files=[image(f"{i}.png") for i in range(9)],
    ),
    Bad(
        "far too many images",
        413,
        "too_many_images",
        {"limit": "max_images", "field": "images"},
        files=[image(f"{i}.png") for i in range(20)],
    ),
    Bad(
        "too many variants",
        422,
        "too_many_variants",
        {"limit": "max_variants", "field": "variants", "limit_value": 16},
        data={"variants": "17"},
    ),
    Bad(
        "file too large",
        413,
        "file_too_large",
        {"limit": "max_file_bytes", "file": "huge.png"},
        files=[image("huge.png", bytes(3_100_000))],
    ),
    Bad(
        "image too large",
        413,
        "image_too_large",
        {"limit": "max_pixels", "file": "wide.png"},
        files=[image("wide.png", encode(np.zeros((1000, 2001, 3), np.uint8), "PNG"))],
    ),
    Bad(
        "output too large",
        413,
        "image_too_large",
        {"limit": "max_pixels", "field": "spec.output.size"},
        data=spec({"output": {"size": [2000, 1001]}}),
    ),
    Bad(
        "crop larger than image",
        422,
        "crop_too_large",
        {"field": "spec.ops[0].size", "file": "small.png"},
        data=spec({"ops": [{"op": "crop", "size": [100, 100], "if_smaller": "error"}]}),
    ),
    Bad("not multipart", 422, "invalid_request", content=b'{"spec": {}}', headers={"content-type": "application/json"}),
    Bad("no content type", 422, "invalid_request", content=b"images=1"),
    Bad(
        "broken multipart",
        422,
        "invalid_request",
        content=b"--x\r\nnot a part",
        headers={"content-type": "multipart/form-data; boundary=x"},
    ),
    Bad(
        "missing images", 422, "invalid_request", {"field": "images"}, files=[("photos", ("a.png", SMALL, "image/png"))]
    ),
    Bad(
        "images as text",
        422,
        "invalid_request",
        {"field": "images"},
        files=[("notes", ("n.txt", b"x", "text/plain"))],
        data={"images": "a.png"},
    ),
    Bad("variants not an integer", 422, "invalid_request", {"field": "variants"}, data={"variants": "two"}),
    Bad("variants zero", 422, "invalid_request", {"field": "variants"}, data={"variants": "0"}),
    Bad("negative seed", 422, "invalid_request", {"field": "seed"}, data={"seed": "-1"}),
    Bad("seed not an integer", 422, "invalid_request", {"field": "seed"}, data={"seed": "1.5"}),
]


def check_error(response: httpx.Response, status: int, code: str, expect: dict[str, Any]) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    for key, value in expect.items():
        assert body.get(key) == value, (key, body)
    if "limit" in expect:
        assert expect["limit"] in body["message"]  # a person reading only the message learns the setting too
    return body


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[bad.name for bad in BAD_INPUTS])
def test_bad_input_gets_its_error(server: ServerProcess, bad: Bad) -> None:
    check_error(bad.send(server.url), bad.status, bad.code, bad.expect)


def raw_post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
    """A request whose Content-Length promises more than it sends: the server must answer from the header."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.putrequest("POST", "/v1/augment")
        for key, value in headers.items():
            connection.putheader(key, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_request_declared_too_large_is_refused_before_its_body_is_read(server: ServerProcess) -> None:
    headers = {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": "4000001"}
    status, body = raw_post(server.url, headers, b"--x\r\n")
    assert status == 413
    assert body["code"] == "request_too_large" and body["limit"] == "max_request_bytes"
    assert body["limit_value"] == 4_000_000 and "4000001" in body["message"]


BOUNDARY = "b0undary"
CHUNKED_BODIES = {
    "/v1/augment": (
        f"multipart/form-data; boundary={BOUNDARY}",
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n\r\n'.encode(),
        f"\r\n--{BOUNDARY}--\r\n".encode(),
    ),
    "/v1/specs/validate": ("application/json", b'{"ops": [], "x": "', b'"}'),
    "/v1/datasets": ("application/json", b'{"name": "', b'"}'),  # a route whose JSON body FastAPI parses
}


@pytest.mark.parametrize("path", list(CHUNKED_BODIES))
def test_a_chunked_request_is_counted_as_it_arrives(server: ServerProcess, path: str) -> None:
    """No Content-Length (chunked): the body is refused with 413 the moment it crosses the limit."""
    content_type, head, tail = CHUNKED_BODIES[path]

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(9):
            yield b"x" * 500_000
        yield tail

    response = httpx.post(f"{server.url}{path}", content=body(), headers={"content-type": content_type}, timeout=30)
    assert "content-length" not in response.request.headers
    check_error(response, 413, "request_too_large", {"limit": "max_request_bytes"})


@pytest.mark.parametrize(
    ("content", "field", "fragment"),
    [
        (b"", "spec", "not valid JSON"),
        (b"{oops", "spec", "not valid JSON"),
        (b"\xff\xfe\x00", "spec", "not valid JSON"),
        (b"[" * 100_000, "spec", "nested too deeply"),
        (b'{"ops": [{"op": "rotate", "right_angles": [90], "angle": [1, 2]}]}', "spec.ops[0]", "not both"),
        (b'{"output": {"format": "gif"}}', "spec.output.format", "'npy'"),
    ],
    ids=["empty", "not JSON", "not UTF-8", "nested", "rule", "format"],
)
def test_validate_refuses_bad_specs_naming_the_field(
    server: ServerProcess, content: bytes, field: str, fragment: str
) -> None:
    response = httpx.post(
        f"{server.url}/v1/specs/validate", content=content, headers={"content-type": "application/json"}
    )
    body = check_error(response, 422, "invalid_spec", {"field": field})
    assert fragment in body["message"]


@pytest.mark.parametrize(
    ("method", "path", "content", "status", "code"),
    [
        ("GET", "/v1/nothing-here", None, 404, "not_found"),
        ("GET", "/v1/augment", None, 405, "method_not_allowed"),
        ("POST", "/v1/datasets", b"\xff", 422, "invalid_request"),  # a JSON body that is not even UTF-8
    ],
)
def test_unknown_routes_and_methods_are_json_too(
    server: ServerProcess, method: str, path: str, content: bytes | None, status: int, code: str
) -> None:
    headers = {"content-type": "application/json"}
    check_error(httpx.request(method, f"{server.url}{path}", content=content, headers=headers), status, code, {})
    assert code in {known.value for known in ErrorCode}  # every code the server emits is in the contract


def test_every_code_the_error_mapping_can_give_is_in_the_contract() -> None:
    from augserve.http_errors import HTTP_CODES

    assert set(HTTP_CODES.values()) <= set(ErrorCode)
    assert all(ErrorCode(code).status == status for status, code in HTTP_CODES.items())


AWKWARD_BUT_VALID = [
    (
        "1x1 image padded to a crop",
        encode(np.full((1, 1, 3), 9, np.uint8), "PNG"),
        {"ops": [{"op": "crop", "size": 8, "fill": 3}]},
    ),
    (
        "extreme aspect ratio",
        SMALL,
        {"ops": [{"op": "crop", "mode": "random_resized", "size": 4, "ratio": [100, 1000]}]},
    ),
    ("shift far out of the picture", SMALL, {"ops": [{"op": "shift", "unit": "pixels", "x": [1e9, 1e9], "p": 1}]}),
    (
        "greyscale with alpha",
        encode(Image.new("LA", (20, 10)), "PNG"),
        {"ops": [{"op": "rotate", "right_angles": [90], "p": 1}]},
    ),
    ("animated gif", encode(Image.new("P", (12, 12)), "GIF"), {"ops": [{"op": "reflect", "vertical": True}]}),
    (
        "16-bit png",
        encode(Image.fromarray(np.full((5, 5), 40000, np.uint16)), "PNG"),
        {"output": {"size": 3, "format": "webp"}},
    ),
]


@pytest.mark.parametrize(
    ("content", "spec_value"), [row[1:] for row in AWKWARD_BUT_VALID], ids=[row[0] for row in AWKWARD_BUT_VALID]
)
def test_awkward_but_valid_inputs_stream_complete_tars(
    server: ServerProcess, content: bytes, spec_value: dict[str, Any]
) -> None:
    """Inputs that once failed in the middle of the stream: they must give a whole tar."""
    response = post_augment(server.url, [image("odd.png", content)], {**spec(spec_value), "variants": "3"})
    assert response.status_code == 200, response.text
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r|") as archive:
        names = [info.name for info in archive]
    assert len(names) == 6 and "__error__.json" not in names
    assert response.content.endswith(bytes(1024))


def test_the_server_is_still_healthy_and_correct_after_all_of_that(server: ServerProcess) -> None:
    """Runs after every bad input above (tests run in file order): same process, still answering right."""
    assert server.process is not None and server.process.poll() is None
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    pixels = np.random.default_rng(3).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    files = [image("last.png", encode(pixels, "PNG"))]
    data = {**spec({"ops": [{"op": "reflect", "p": 1}], "output": {"format": "npy"}}), "variants": "2"}
    response = post_augment(server.url, files, data)
    assert response.status_code == 200
    read = list(read_tar(io.BytesIO(response.content)))
    assert [name for name, _ in read] == ["00000_000.npy", "00000_000.json", "00000_001.npy", "00000_001.json"]
    for _, variant in read[::2]:
        np.testing.assert_array_equal(read_npy(variant), pixels[:, ::-1])
    assert "unexpected error" not in server.log()  # no request above was answered with a 500
