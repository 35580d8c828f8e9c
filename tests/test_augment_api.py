"""POST /v1/augment and the meta endpoints against a real uvicorn server: the tar, its naming and metadata,
seeds and replay, curl, streaming, and the self-description (ops, validate, health, OpenAPI)."""

from __future__ import annotations

import io
import json
import shlex
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from augserve.devserver import ServerProcess
from augserve.engine import Pipeline
from augserve_client.connections import HttpxBody
from augserve_client.protocol.seeds import derive_seed
from augserve_client.protocol.spec import Spec
from augserve_client.protocol.wire import read_npy, read_tar
from conftest import encode
from PIL import Image

SPEC: dict[str, Any] = {
    "ops": [
        {"op": "reflect", "horizontal": True, "p": 0.5},
        {"op": "rotate", "angle": [-20, 20], "p": 0.8},
        {"op": "crop", "mode": "random_resized", "size": [64, 80], "scale": [0.3, 1.0]},
        {"op": "shift", "x": [-0.1, 0.1], "y": [-0.1, 0.1], "p": 0.5},
    ],
    "output": {"format": "png"},
}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp", "npy": "npy"}


def augment(server: ServerProcess, files: list[tuple[str, bytes]], **data: Any) -> httpx.Response:
    form = {key: value if isinstance(value, str) else json.dumps(value) for key, value in data.items()}
    uploads = [("images", (name, content, "application/octet-stream")) for name, content in files]
    return httpx.post(f"{server.url}/v1/augment", files=uploads, data=form, timeout=60)


def members(tar: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r|") as archive:
        return [(info.name, archive.extractfile(info).read()) for info in archive]  # type: ignore[union-attr]


def decoded(name: str, data: bytes) -> np.ndarray:
    if name.endswith(".npy"):
        return read_npy(data)
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def photo_pngs(photos: list[np.ndarray]) -> list[tuple[str, bytes]]:
    """Lossless uploads of (a corner of) each real photo, so the server decodes exactly these pixels."""
    return [(f"photo{index}.png", encode(photo[:200, :300], "PNG")) for index, photo in enumerate(photos)]


def test_the_response_is_a_webdataset_tar_that_tarfile_reads(server: ServerProcess, photo_files: list[Path]) -> None:
    files = [(path.name, path.read_bytes()) for path in photo_files]
    response = augment(server, files, spec=SPEC, variants="3", seed="5")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-tar"
    assert response.headers["x-augserve-seed"] == "5" and response.headers["x-augserve-count"] == "6"
    read = members(response.content)
    stems = [f"{image:05d}_{variant:03d}" for image in range(2) for variant in range(3)]
    assert [name for name, _ in read] == [name for stem in stems for name in (f"{stem}.png", f"{stem}.json")]
    for (image_name, image_data), (_, meta_data) in zip(read[::2], read[1::2], strict=True):
        meta = json.loads(meta_data)
        image, variant = meta["image"], meta["variant"]
        assert image_name == f"{image:05d}_{variant:03d}.png" and meta["key"] == image_name[:-4]
        assert meta["source"] == photo_files[image].name
        assert meta["seed"] == derive_seed(5, image, variant) and meta["request_seed"] == 5
        assert meta["shape"] == [64, 80, 3] and meta["format"] == "png"
        assert decoded(image_name, image_data).shape == (64, 80, 3)
        assert any(step["op"] == "crop" and len(step["box"]) == 4 for step in meta["applied"])
        assert {step["op"] for step in meta["applied"]} <= {"reflect", "rotate", "crop", "shift"}


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "npy"])
def test_every_output_format_has_its_extension(
    server: ServerProcess, photo_pngs: list[tuple[str, bytes]], fmt: str
) -> None:
    spec = {"ops": [{"op": "crop", "size": [32, 48]}], "output": {"format": fmt, "quality": 80}}
    response = augment(server, photo_pngs[:1], spec=spec, variants="2", seed="1")
    assert response.status_code == 200, response.text
    read = members(response.content)
    assert [name for name, _ in read] == [f"00000_00{v}.{ext}" for v in range(2) for ext in (EXTENSIONS[fmt], "json")]
    assert all(decoded(name, data).shape == (32, 48, 3) for name, data in read[::2])


def test_without_a_seed_the_server_picks_one_and_replaying_it_gives_identical_bytes(
    server: ServerProcess, photo_pngs: list[tuple[str, bytes]]
) -> None:
    first = augment(server, photo_pngs, spec=SPEC, variants="2")
    assert first.status_code == 200
    seed = int(first.headers["x-augserve-seed"])
    assert all(json.loads(data)["request_seed"] == seed for name, data in members(first.content)[1::2])
    replay = augment(server, photo_pngs, spec=SPEC, variants="2", seed=str(seed))
    assert replay.content == first.content
    other = augment(server, photo_pngs, spec=SPEC, variants="2")
    assert int(other.headers["x-augserve-seed"]) != seed and other.content != first.content


def test_each_streamed_variant_is_what_the_engine_makes_from_its_seed_alone(
    server: ServerProcess, photos: list[np.ndarray], photo_pngs: list[tuple[str, bytes]]
) -> None:
    spec = {**SPEC, "output": {"format": "npy"}}
    response = augment(server, photo_pngs, spec=spec, variants="3", seed="99")
    pipeline = Pipeline(Spec.model_validate(spec))
    for name, data in members(response.content)[::2]:
        image, variant = int(name[:5]), int(name[6:9])
        local = pipeline(photos[image][:200, :300], derive_seed(99, image, variant))
        np.testing.assert_array_equal(read_npy(data), local.image)


def test_a_curl_style_multipart_call(server: ServerProcess, photo_files: list[Path]) -> None:
    """What ``curl -F images=@photo0.jpg -F images=@photo1.jpg -F spec=... -F variants=2`` sends."""
    with photo_files[0].open("rb") as first, photo_files[1].open("rb") as second:
        response = httpx.post(
            f"{server.url}/v1/augment",
            files=[
                ("images", (photo_files[0].name, first, "image/jpeg")),
                ("images", (photo_files[1].name, second, "image/jpeg")),
            ],
            data={"spec": json.dumps(SPEC), "variants": "2"},
            timeout=60,
        )
    assert response.status_code == 200
    assert [name for name, _ in members(response.content)][::2] == [
        "00000_000.png",
        "00000_001.png",
        "00001_000.png",
        "00001_001.png",
    ]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_real_curl_output_is_a_tar(server: ServerProcess, photo_files: list[Path], tmp_path: Path) -> None:
    spec = json.dumps({"ops": [{"op": "reflect"}, {"op": "crop", "size": 64}], "output": {"format": "jpeg"}})
    command = ["curl", "-sS", "-F", f"images=@{photo_files[0]}", "-F", f"spec={spec}", "-F", "variants=2"]
    result = subprocess.run([*command, "-F", "seed=3", f"{server.url}/v1/augment"], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    read = members(result.stdout)
    assert [name for name, _ in read] == ["00000_000.jpg", "00000_000.json", "00000_001.jpg", "00000_001.json"]
    assert decoded(*read[0]).shape == (64, 64, 3)
    if shutil.which("tar"):  # the README's `curl ... | tar x`
        pipeline = f"set -o pipefail; {shlex.join(command)} -F seed=3 {server.url}/v1/augment | tar x"
        subprocess.run(["bash", "-c", pipeline], cwd=tmp_path, check=True, timeout=60)
        assert sorted(path.name for path in tmp_path.iterdir()) == sorted(name for name, _ in read)
        assert (tmp_path / "00000_001.jpg").read_bytes() == read[2][1]


def test_the_first_variant_arrives_before_the_last_is_computed(server: ServerProcess, photos: list[np.ndarray]) -> None:
    """A slow spec (a rotation and a large output): if the server buffered, nothing would arrive before the end."""
    spec = {
        "ops": [{"op": "rotate", "angle": [-30, 30], "p": 1, "interpolation": "cubic"}],
        "output": {"size": [1400, 1400], "format": "png"},
    }
    files = [("images", ("photo.png", encode(photos[0], "PNG"), "image/png"))]
    form = {"spec": json.dumps(spec), "variants": "16", "seed": "1"}
    first_member, count = None, 0
    with httpx.stream("POST", f"{server.url}/v1/augment", files=files, data=form, timeout=60) as response:
        assert response.status_code == 200
        started = time.monotonic()
        for _name, _data in read_tar(HttpxBody(response)):
            count += 1
            first_member = first_member or time.monotonic() - started
        total = time.monotonic() - started
    assert count == 32 and first_member is not None
    assert first_member < 0.5 * total, (first_member, total)


# --- meta endpoints ----------------------------------------------------------------------------------------


def test_ops_lists_every_op_with_its_json_schema(server: ServerProcess) -> None:
    body = httpx.get(f"{server.url}/v1/ops").json()
    assert body["version"] == 1
    assert set(body["ops"]) == {"reflect", "rotate", "crop", "shift", "albumentations"}
    for name, schema in body["ops"].items():
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert {"op", "p"} <= set(schema["properties"]) and schema["properties"]["op"]["const"] == name
    assert {"angle", "right_angles", "border", "fill", "interpolation"} <= set(body["ops"]["rotate"]["properties"])
    assert body["ops"]["crop"]["required"] == ["op", "size"]  # the tag picks the op on the wire
    assert {"size", "format", "quality"} <= set(body["output"]["properties"])
    Spec.model_validate(body["example"])


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"ops": [{"op": "rotate", "right_angles": [90, 270]}, {"op": "crop", "size": 16}]},
        {"ops": [{"op": "shift", "unit": "pixels", "x": [-3, 3]}], "output": {"size": 8, "format": "webp"}},
    ],
)
def test_validate_returns_the_normalised_form_which_validates_again(
    server: ServerProcess, spec: dict[str, Any]
) -> None:
    response = httpx.post(f"{server.url}/v1/specs/validate", json=spec)
    assert response.status_code == 200
    normalised = response.json()
    assert normalised == Spec.model_validate(spec).model_dump(mode="json")
    assert httpx.post(f"{server.url}/v1/specs/validate", json=normalised).json() == normalised


def test_validate_names_the_bad_field(server: ServerProcess) -> None:
    response = httpx.post(f"{server.url}/v1/specs/validate", json={"ops": [{"op": "crop", "size": [8, 0]}]})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_spec" and body["field"] == "spec.ops[0].size[1]"
    assert "greater than 0" in body["message"] and body["errors"][0]["field"] == "spec.ops[0].size[1]"


def test_health_and_readiness(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "threads": 2}


def test_the_docs_and_the_openapi_schema_with_request_examples(server: ServerProcess) -> None:
    docs = httpx.get(f"{server.url}/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    schema = httpx.get(f"{server.url}/openapi.json").json()
    augment_body = schema["paths"]["/v1/augment"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert augment_body["required"] == ["images"]
    assert set(augment_body["properties"]) == {"images", "spec", "variants", "seed", "masks", "targets"}
    Spec.model_validate(augment_body["properties"]["spec"]["example"])
    validate_body = schema["paths"]["/v1/specs/validate"]["post"]["requestBody"]["content"]["application/json"]
    Spec.model_validate(validate_body["example"])
    assert "application/x-tar" in schema["paths"]["/v1/augment"]["post"]["responses"]["200"]["content"]
