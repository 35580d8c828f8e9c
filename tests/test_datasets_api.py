"""Datasets against a real server: registration, deduplication, path safety, persistence, cache, refusals."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from augserve.devserver import ServerProcess
from augserve.epoch_stream import error_frame
from augserve.errors import ServiceError
from augserve_client import Client, ConflictError, InvalidImageError, InvalidRequestError, NotFoundError
from augserve_client.protocol.errors import ErrorCode, ServerError
from augserve_client.protocol.wire import read_frames
from conftest import flaky_server
from pydantic import ValidationError


def blob_count(server: ServerProcess) -> int:
    return sum(1 for path in (server.data_dir / "blobs").rglob("*") if path.is_file())


def test_upload_stores_each_file_once(dataset_server: ServerProcess, indexed_files: list[Path]) -> None:
    with Client(dataset_server.url) as client:
        created = client.upload_dataset("once-a", indexed_files[:10], labels=list(range(10)), progress=False)
        assert created["count"] == 10 and created["kind"] == "upload"
        before = blob_count(dataset_server)
        hashes = client.request("POST", "/v1/blobs/missing", json={"hashes": []}).json()
        assert hashes == {"missing": []}
        again = client.upload_dataset("once-b", indexed_files[:10], labels=list(range(10)), progress=False)
        assert again["count"] == 10
        assert blob_count(dataset_server) == before  # same bytes, second dataset: nothing new stored


def test_registration_is_idempotent_and_conflicts_are_409(
    dataset_server: ServerProcess, indexed_files: list[Path]
) -> None:
    with Client(dataset_server.url) as client:
        client.upload_dataset("idem", indexed_files[:3], labels=[0, 1, 2], progress=False)
        response = httpx.post(
            f"{dataset_server.url}/v1/datasets",
            json={"name": "idem", "items": [{"blob": d, "label": i} for i, d in enumerate(_hashes(indexed_files[:3]))]},
        )
        assert response.status_code == 200
        with pytest.raises(ConflictError) as error:
            client.upload_dataset("idem", indexed_files[:3], labels=[2, 1, 0], progress=False)
        assert error.value.status == 409 and error.value.field == "name"


def _hashes(paths: list[Path]) -> list[str]:
    from augserve_client.uploads import sha256_file

    return [sha256_file(path) for path in paths]


def test_string_labels_become_classes(dataset_server: ServerProcess, indexed_files: list[Path]) -> None:
    with Client(dataset_server.url) as client:
        created = client.upload_dataset("strings", indexed_files[:4], labels=["b", "a", "b", None], progress=False)
        assert created["classes"] == ["a", "b"]
        batch = next(iter(client.epoch("strings", {"output": {"size": 8}}, batch_size=4, shuffle=False)))
        assert batch.labels.tolist() == [1, 0, 1, -1]


def test_server_folder_imagefolder_layout(dataset_server: ServerProcess) -> None:
    with Client(dataset_server.url) as client:
        created = client.register_folder("pets", "pets")
        assert created["count"] == 12 and created["classes"] == ["cat", "dog"] and created["kind"] == "folder"
        spec = {"output": {"size": [16, 16], "format": "npy"}}
        labels = np.concatenate([b.labels for b in client.epoch("pets", spec, batch_size=5, shuffle=False)])
        assert labels.tolist() == [0] * 6 + [1] * 6


@pytest.mark.parametrize("folder", ["../", "pets/../..", "/etc", "/"])
def test_paths_outside_the_root_are_refused(dataset_server: ServerProcess, folder: str) -> None:
    response = httpx.post(f"{dataset_server.url}/v1/datasets", json={"name": "escape", "folder": folder})
    assert response.status_code == 403
    assert response.json()["code"] == "path_outside_root" and response.json()["field"] == "folder"


def test_symlinks_out_of_the_root_are_refused(dataset_server: ServerProcess, data_root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    (outside / "class").mkdir(parents=True)
    (outside / "class" / "x.png").write_bytes(b"not really")
    (data_root / "linked-dir").symlink_to(outside, target_is_directory=True)
    (data_root / "linked-file" / "class").mkdir(parents=True)
    (data_root / "linked-file" / "class" / "x.png").symlink_to(outside / "class" / "x.png")
    try:
        for folder in ("linked-dir", "linked-file"):
            response = httpx.post(f"{dataset_server.url}/v1/datasets", json={"name": "sneaky", "folder": folder})
            assert response.status_code == 403, response.text
            assert response.json()["code"] == "path_outside_root"
    finally:
        os.unlink(data_root / "linked-dir")
        os.unlink(data_root / "linked-file" / "class" / "x.png")


def test_list_describe_delete(dataset_server: ServerProcess, indexed_files: list[Path]) -> None:
    with Client(dataset_server.url) as client:
        client.upload_dataset("doomed", indexed_files[:2], progress=False)
        assert "doomed" in [d["name"] for d in client.datasets()]
        described = client.describe("doomed")
        assert described["count"] == 2 and described["bytes"] > 0
        assert {"hits", "misses", "items", "bytes", "max_bytes"} <= set(described["cache"])
        client.delete_dataset("doomed")
        with pytest.raises(NotFoundError):
            client.describe("doomed")
        with pytest.raises(NotFoundError):
            list(client.epoch("doomed", batch_size=2))


def test_bad_uploads_and_references_are_4xx(dataset_server: ServerProcess) -> None:
    with Client(dataset_server.url) as client:
        with pytest.raises(InvalidImageError) as bad_file:
            client.request("POST", "/v1/blobs", files=[("files", ("notes.txt", b"hello", "text/plain"))])
        assert bad_file.value.file == "notes.txt" and bad_file.value.code == "not_an_image"
        with pytest.raises(NotFoundError) as unknown_blob:
            client.request("POST", "/v1/datasets", json={"name": "ghost", "items": [{"blob": "ab" * 32}]})
        assert unknown_blob.value.field == "items[0].blob" and "never uploaded" in unknown_blob.value.message
        with pytest.raises(InvalidRequestError) as bad_name:
            client.request("POST", "/v1/datasets", json={"name": "../x", "items": [{"blob": "ab" * 32}]})
        assert bad_name.value.field == "name"
        with pytest.raises(InvalidRequestError) as both:
            client.request("POST", "/v1/datasets", json={"name": "x", "folder": "pets", "items": [{"blob": "ab"}]})
        assert both.value.status == 422


def test_epoch_refusals_come_before_streaming(dataset_server: ServerProcess) -> None:
    with Client(dataset_server.url) as client:
        client.register_folder("pets-r", "pets")
        with pytest.raises(ServerError) as mixed:  # the pets crops have 6 different heights
            list(client.epoch("pets-r", {"ops": [{"op": "reflect"}]}, batch_size=4))
        assert mixed.value.code == "mixed_shapes" and mixed.value.status == 422
        with pytest.raises(ServerError) as too_big:
            list(client.epoch("pets-r", {"output": {"size": 8}}, batch_size=100_000))
        assert too_big.value.code == "batch_too_large" and too_big.value.limit == "max_batch_size"
        crop = {"ops": [{"op": "crop", "size": 500, "if_smaller": "error"}]}
        with pytest.raises(ServerError) as no_fit:
            list(client.epoch("pets-r", crop, batch_size=4))
        assert no_fit.value.code == "crop_too_large"
        with pytest.raises(ValidationError):  # the client refuses it before sending anything...
            client.epoch("pets-r", batch_size=4, shard_index=3, shard_count=2)
    body = {"batch_size": 4, "shard_index": 3, "shard_count": 2}  # ...and so does the server
    response = httpx.post(f"{dataset_server.url}/v1/datasets/pets-r/epochs", json=body)
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"
    assert dataset_server.alive()


def test_bad_spec_in_epoch_request_names_the_field(dataset_server: ServerProcess) -> None:
    body = {"spec": {"ops": [{"op": "rotate", "angle": [9, 1]}]}, "batch_size": 2}
    response = httpx.post(f"{dataset_server.url}/v1/datasets/pets/epochs", json=body)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_spec" and response.json()["field"] == "spec.ops[0].angle"


def test_second_epoch_is_served_from_the_cache(
    dataset_server: ServerProcess, indexed_files: list[Path], small_spec: dict
) -> None:
    with Client(dataset_server.url) as client:
        client.upload_dataset("cached", indexed_files[:12], progress=False)
        list(client.epoch("cached", small_spec, batch_size=4, epoch=0))
        before = client.describe("cached")["cache"]
        list(client.epoch("cached", small_spec, batch_size=4, epoch=1))
        after = client.describe("cached")["cache"]
    assert after["misses"] == before["misses"]
    assert after["hits"] - before["hits"] == 12


@pytest.mark.slow
def test_datasets_survive_restart_and_are_shared_by_replicas(
    tmp_path: Path, indexed_files: list[Path], small_spec: dict
) -> None:
    data = tmp_path / "shared"
    first = ServerProcess(data, threads=1).start()
    try:
        with Client(first.url) as client:
            client.upload_dataset("shared", indexed_files[:8], labels=list(range(8)), progress=False)
            expected = [b.images.copy() for b in client.epoch("shared", small_spec, batch_size=4, seed=5)]
        second = ServerProcess(data, threads=1).start()  # a replica on the same data directory
        try:
            with Client(second.url) as client:
                got = [b.images for b in client.epoch("shared", small_spec, batch_size=4, seed=5)]
            assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))
        finally:
            second.stop()
        first.stop()
        restarted = ServerProcess(data, port=first.port, threads=1).start()
        try:
            with Client(restarted.url) as client:
                assert client.describe("shared")["count"] == 8
        finally:
            restarted.stop()
    finally:
        first.stop()


@pytest.mark.parametrize("request_fields", [{}, {"shard_index": 2, "shard_count": 3}, {"drop_last": True}])
def test_an_epoch_stream_announces_its_exact_length(
    dataset_server: ServerProcess, indexed_files: list[Path], small_spec: dict, request_fields: dict
) -> None:
    """Content-Length, not chunks: every frame's size is fixed before the first sample is drawn. Labels as wide
    as they come (negative, many digits) and a short last batch must not break the count."""
    labels = [-1, 123_456_789_012, 7, -5_000_000_000, 3, 0, 11, 2, 99, 5, 6]
    with Client(dataset_server.url) as client:
        client.upload_dataset("lengths", indexed_files[:11], labels=labels, progress=False)
    body = {"spec": small_spec, "batch_size": 4, "seed": 3, **request_fields}
    response = httpx.post(f"{dataset_server.url}/v1/datasets/lengths/epochs", json=body)
    assert response.status_code == 200 and "transfer-encoding" not in response.headers
    assert int(response.headers["content-length"]) == len(response.content)
    frames = list(read_frames(io.BytesIO(response.content)))
    assert frames[-1][0] == {"kind": "end", "batches": len(frames) - 1, "nbytes": 0}
    for header, _ in frames[:-1]:
        assert header["labels"] == [labels[index] for index in header["indices"]]


@pytest.fixture
def flaky(tmp_path: Path, indexed_files: list[Path]) -> Iterator[tuple[Client, Path]]:
    """The flaky folder dataset (conftest.flaky_server), with long file names."""
    with flaky_server(tmp_path, indexed_files, "{index:03d}-" + "a-long-file-name-" * 8 + ".png") as (server, broken):
        with Client(server.url) as client:
            yield client, broken
            assert client.describe("flaky")["count"] == 12  # the server serves on
        assert "Content-Length" not in server.log()


@pytest.mark.parametrize(
    ("batch_size", "before"),
    [(4, [[0, 1, 2, 3], [4, 5, 6, 7]]), (12, [])],
    ids=["third-batch", "last-part-of-a-split-first-batch"],  # a stream computes its first batch in parts
)
def test_a_sample_that_fails_mid_stream_ends_it_with_its_error(
    flaky: tuple[Client, Path], batch_size: int, before: list[list[int]]
) -> None:
    """The batches before the broken file arrive whole, then the client raises the server's typed error (not a
    short epoch that looks complete, nor a frame cut off by the error)."""
    client, broken = flaky
    received = []
    with pytest.raises(InvalidImageError) as error:
        spec = {"output": {"size": [16, 16], "format": "npy"}}
        for batch in client.epoch("flaky", spec, batch_size=batch_size, shuffle=False, retries=0):
            received.append(batch.indices.tolist())
    assert received == before
    assert broken.name in str(error.value)


def test_an_error_frame_is_shortened_to_fit_what_the_failure_leaves(flaky: tuple[Client, Path]) -> None:
    """With 1x1 outputs a failure in the last batch leaves ~200 bytes of the announced length, fewer than the
    error's full body (which names the long file twice). The frame keeps its code and what fits of the message,
    so the client raises the typed error at once, with its default retries, rather than a broken stream."""
    client, _ = flaky
    received = []
    with pytest.raises(InvalidImageError) as error:
        spec = {"output": {"size": [1, 1], "format": "npy"}}
        for batch in client.epoch("flaky", spec, batch_size=1, start_batch=10, shuffle=False):
            received.append(batch.number)
    assert received == [10]
    assert error.value.code == "not_an_image" and error.value.message.startswith("flaky/all/011-")


def test_error_frames_fit_the_room_they_are_given() -> None:
    error = ServiceError(ErrorCode.NOT_AN_IMAGE, "é" * 300, file="x" * 200)  # "é" takes 6 bytes of JSON
    whole = b"".join(error_frame(error))
    assert b"".join(error_frame(error, len(whole))) == whole  # a body that fits is kept whole
    for room in (80, 150, 400):
        data = b"".join(error_frame(error, room))
        assert len(data) <= room
        header = json.loads(data[8 : 8 + int.from_bytes(data[4:8], "little")])
        assert header == {"kind": "error", "code": "not_an_image", "message": header["message"], "nbytes": 0}
        assert header["message"] == "é" * len(header["message"])


def test_a_stalled_reader_holds_back_production(tmp_path: Path, indexed_files: list[Path]) -> None:
    """Backpressure: while the trainer does not read, the server computes only a bounded window ahead.

    96 samples of 384x384x3 (442 KB) make a 42 MB epoch, far more than the compute window (2 x threads batches)
    plus the socket buffers. Every sample produced is one cache lookup, so the hit count measures production.
    """
    server = ServerProcess(tmp_path / "data", threads=2).start()
    try:
        with Client(server.url) as client:
            client.upload_dataset("big", indexed_files * 2, progress=False)  # uploading warms the cache
            body = {"spec": {"output": {"size": [384, 384], "format": "npy"}}, "batch_size": 4}
            with client.http.stream("POST", "/v1/datasets/big/epochs", json=body) as response:
                assert next(response.iter_raw(1 << 16))
                time.sleep(1.5)  # a stalled trainer
                produced = client.describe("big")["cache"]["hits"]
        assert 0 < produced <= 72, f"{produced} of 96 samples produced while nobody read"
    finally:
        server.stop()


def test_epoch_output_sizes_are_bounded_by_the_pixel_limit(tmp_path: Path, indexed_files: list[Path]) -> None:
    server = ServerProcess(tmp_path / "data", max_pixels=10_000, threads=1).start()
    try:
        with Client(server.url) as client:
            client.upload_dataset("tiny", indexed_files[:2], progress=False)
            with pytest.raises(ServerError) as error:
                list(client.epoch("tiny", {"output": {"size": [200, 200]}}, batch_size=2))
        assert error.value.code == "image_too_large" and error.value.limit == "max_pixels"
        assert error.value.field == "spec.output.size"
    finally:
        server.stop()


def test_too_many_files_in_one_upload_names_the_limit(tmp_path: Path, indexed_files: list[Path]) -> None:
    server = ServerProcess(tmp_path / "data", max_upload_files=2, threads=1).start()
    try:
        files = [("files", (path.name, path.read_bytes(), "image/png")) for path in indexed_files[:5]]
        response = httpx.post(f"{server.url}/v1/blobs", files=files)
        assert response.status_code == 413
        assert response.json()["limit"] == "max_upload_files" and response.json()["field"] == "files"
    finally:
        server.stop()
