"""The Python client: inputs of every kind, output formats, typed errors from the real server, and local spec
validation. Broken streams from a fake peer are in test_client_streams.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from augserve.devserver import ServerProcess, free_port
from augserve_client import (
    AugserveError,
    Client,
    Crop,
    InvalidImageError,
    InvalidRequestError,
    LimitExceededError,
    Output,
    Reflect,
    Rotate,
    ServerError,
    Spec,
    TransportError,
    derive_seed,
)
from conftest import encode
from PIL import Image
from pydantic import ValidationError

CROP = {"ops": [{"op": "reflect"}, {"op": "crop", "size": [64, 80]}]}


@pytest.fixture(scope="module")
def pixels(photos: list[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(photos[0][100:220, 200:360])


def test_augment_streams_variants_with_their_metadata(client: Client, photo_files: list[Path]) -> None:
    stream = client.augment(photo_files, CROP, variants=3, seed=11)
    assert stream.seed == 11 and stream.count == 6
    variants = list(stream)
    assert [variant.name for variant in variants] == [f"0000{i}_00{v}.npy" for i in range(2) for v in range(3)]
    for variant in variants:
        assert variant.image.shape == (64, 80, 3) and variant.image.dtype == np.uint8
        assert variant.seed == derive_seed(11, variant.meta["image"], variant.meta["variant"])
        assert variant.meta["source"] == photo_files[variant.meta["image"]].name


def test_without_a_seed_the_stream_reports_the_one_the_server_chose(client: Client, pixels: np.ndarray) -> None:
    stream = client.augment([pixels], CROP, variants=2)
    first = [variant.image.tobytes() for variant in stream]
    replay = [variant.image.tobytes() for variant in client.augment([pixels], CROP, variants=2, seed=stream.seed)]
    assert replay == first


@pytest.mark.parametrize("fmt", ["npy", "png", "jpeg", "webp"])
def test_every_format_decodes_to_the_right_shape(client: Client, pixels: np.ndarray, fmt: str) -> None:
    variants = list(client.augment([pixels], CROP, variants=2, seed=3, format=fmt))
    assert all(variant.name.endswith({"jpeg": ".jpg"}.get(fmt, f".{fmt}")) for variant in variants)
    assert all(variant.image.shape == (64, 80, 3) for variant in variants)
    if fmt == "png":  # lossless: the same pixels as raw npy
        raw = list(client.augment([pixels], CROP, variants=2, seed=3, format="npy"))
        assert all(np.array_equal(a.image, b.image) for a, b in zip(variants, raw, strict=True))


def test_format_none_keeps_the_specs_own(client: Client, pixels: np.ndarray) -> None:
    spec = {**CROP, "output": {"format": "webp"}}
    assert [variant.name for variant in client.augment([pixels], spec, format=None)] == ["00000_000.webp"]


def test_paths_bytes_pil_images_and_arrays_are_the_same_input(
    client: Client, pixels: np.ndarray, tmp_path: Path
) -> None:
    path = tmp_path / "pixels.png"
    Image.fromarray(pixels).save(path)
    inputs = [path, str(path), path.read_bytes(), Image.fromarray(pixels), pixels]
    results = [[v.image.tobytes() for v in client.augment([item], CROP, variants=2, seed=5)] for item in inputs]
    assert all(result == results[0] for result in results)


def test_greyscale_arrays_come_back_as_rgb(client: Client, pixels: np.ndarray) -> None:
    grey = np.ascontiguousarray(pixels[..., 1])
    (variant,) = client.augment([grey], {"ops": [{"op": "reflect", "p": 1}]}, seed=1)
    np.testing.assert_array_equal(variant.image, np.repeat(grey[:, ::-1, None], 3, axis=2))


def test_builders_plain_dicts_and_json_text_are_the_same_spec(client: Client, pixels: np.ndarray) -> None:
    built = Spec(ops=[Reflect(p=1.0), Rotate(right_angles=[90], p=1.0), Crop(size=(40, 30))], output=Output(size=20))
    as_dict = built.model_dump(mode="json")
    outputs = [[v.image.tobytes() for v in client.augment([pixels], s, variants=2, seed=2)] for s in (built, as_dict)]
    outputs.append([v.image.tobytes() for v in client.augment([pixels], json.dumps(as_dict), variants=2, seed=2)])
    assert outputs[0] == outputs[1] == outputs[2]
    assert np.frombuffer(outputs[0][0], np.uint8).size == 20 * 20 * 3


def test_right_angle_specs_go_through_the_client(client: Client, pixels: np.ndarray) -> None:
    (variant,) = client.augment([pixels], {"ops": [{"op": "rotate", "right_angles": [90], "p": 1}]}, seed=1)
    np.testing.assert_array_equal(variant.image, np.rot90(pixels))
    assert variant.meta["applied"][0]["angle"] == 90


def test_validate_spec_and_ops(client: Client) -> None:
    assert client.validate_spec({"ops": [{"op": "reflect"}]})["ops"][0]["p"] == 0.5
    assert client.validate_spec(Spec(ops=[Rotate(right_angles=[180])]))["ops"][0]["angle"] is None
    assert set(client.ops()["ops"]) == {"reflect", "rotate", "crop", "shift", "albumentations"}
    assert client.health()


def test_a_stream_can_be_closed_early_and_the_client_reused(client: Client, pixels: np.ndarray) -> None:
    stream = client.augment([pixels], CROP, variants=16, seed=1)
    next(stream)
    stream.close()
    assert len(list(client.augment([pixels], CROP, variants=2, seed=1))) == 2


# --- typed errors from the real server ---------------------------------------------------------------------


def test_a_bad_request_raises_invalid_request_error_naming_the_field(client: Client, pixels: np.ndarray) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        client.augment([pixels], CROP, variants=0)
    assert (caught.value.status, caught.value.code, caught.value.field) == (422, "invalid_request", "variants")
    with pytest.raises(InvalidRequestError) as caught:
        client.validate_spec({"ops": [{"op": "rotate", "angle": [3, 1]}]})
    assert caught.value.code == "invalid_spec" and caught.value.field == "spec.ops[0].angle"


def test_a_crop_too_large_names_the_file_and_the_field(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "tiny.png"
    Image.new("RGB", (10, 10)).save(path)
    with pytest.raises(InvalidRequestError) as caught:
        client.augment([path], {"ops": [{"op": "crop", "size": 20, "if_smaller": "error"}]})
    assert caught.value.code == "crop_too_large"
    assert (caught.value.file, caught.value.field) == ("tiny.png", "spec.ops[0].size")


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"", 422, "empty_file"),
        (b"no picture here", 422, "not_an_image"),
        (encode(np.zeros((16, 16, 3), np.uint8), "ICO"), 415, "unsupported_format"),
    ],
)
def test_a_bad_image_raises_invalid_image_error_naming_the_file(
    client: Client, content: bytes, status: int, code: str
) -> None:
    with pytest.raises(InvalidImageError) as caught:
        client.augment([encode(np.zeros((8, 8, 3), np.uint8), "PNG"), content])
    assert (caught.value.status, caught.value.code, caught.value.file) == (status, code, "image00001")
    assert caught.value.message


@pytest.mark.parametrize(
    ("images", "variants", "status", "limit"),
    [(1, 17, 422, "max_variants"), (9, 1, 413, "max_images")],
)
def test_a_limit_raises_limit_exceeded_error_naming_it(
    client: Client, pixels: np.ndarray, images: int, variants: int, status: int, limit: str
) -> None:
    with pytest.raises(LimitExceededError) as caught:
        client.augment([pixels[:8, :8]] * images, CROP, variants=variants)
    assert (caught.value.status, caught.value.limit) == (status, limit)
    assert isinstance(caught.value, ServerError) and isinstance(caught.value, AugserveError)


def test_an_image_over_the_pixel_limit(client: Client) -> None:
    with pytest.raises(LimitExceededError) as caught:
        client.augment([np.zeros((1000, 2001), np.uint8)])
    assert (caught.value.code, caught.value.limit, caught.value.file) == (
        "image_too_large",
        "max_pixels",
        "image00000.npy",
    )


# --- no server ---------------------------------------------------------------------------------------------


@pytest.fixture
def nowhere() -> Iterator[Client]:
    """A client for a port nothing listens on: any request it sends fails with a transport error."""
    with Client(f"http://127.0.0.1:{free_port()}", timeout=5) as unreachable:
        yield unreachable


@pytest.mark.parametrize(
    "spec",
    [{"ops": [{"op": "blur"}]}, {"ops": [{"op": "rotate", "angle": [9, 1]}]}, '{"version": 2}', '{"ops": [}'],
    ids=["unknown op", "range", "version in JSON text", "broken JSON text"],
)
def test_a_bad_spec_is_refused_locally_before_anything_is_sent(nowhere: Client, spec: object) -> None:
    with pytest.raises(ValidationError):
        nowhere.augment([np.zeros((4, 4, 3), np.uint8)], spec)  # type: ignore[arg-type]


def test_an_unreachable_server_is_a_transport_error(nowhere: Client) -> None:
    with pytest.raises(TransportError):
        nowhere.augment([np.zeros((4, 4, 3), np.uint8)], CROP)
    with pytest.raises(TransportError):
        nowhere.ops()
    assert not nowhere.health()


def test_an_unsupported_input_type_is_a_type_error(nowhere: Client) -> None:
    with pytest.raises(TypeError, match="cannot upload"):
        nowhere.augment([12345], CROP)  # type: ignore[list-item]


def test_the_client_closes_its_connections(server: ServerProcess, pixels: np.ndarray) -> None:
    with Client(server.url) as scoped:
        assert scoped.health()
        assert len(list(scoped.augment([pixels], CROP, variants=2, seed=1))) == 2
        open_before = _connections_to(server.port)
    assert scoped.http.is_closed
    assert _connections_to(server.port) == open_before - 2  # httpx's and the stream's keep-alive connections


def _connections_to(port: int) -> int:
    return sum(c.status == "ESTABLISHED" and c.raddr and c.raddr.port == port for c in psutil.net_connections("tcp"))


def test_a_client_given_an_httpx_transport_streams_through_it(
    server: ServerProcess, client: Client, pixels: np.ndarray
) -> None:
    """An injected transport (an ASGI app, a mock, a proxy) carries streams too, and they read the same."""
    counted = CountingTransport()
    with Client(server.url, transport=counted) as own:
        mine = [bytes(variant.data) for variant in own.augment([pixels], CROP, variants=3, seed=5)]
    assert counted.requests == ["POST /v1/augment"]
    assert mine == [bytes(variant.data) for variant in client.augment([pixels], CROP, variants=3, seed=5)]


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        return super().handle_request(request)


def test_validate_spec_text_that_is_not_json_is_a_typed_error(client: Client) -> None:
    with pytest.raises(InvalidRequestError) as error:
        client.validate_spec("{not json")
    assert error.value.code == "invalid_spec" and error.value.field == "spec"
