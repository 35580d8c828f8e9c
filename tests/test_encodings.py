"""Encoded epoch streams (``encoding``: raw, zstd, jpeg) against a real server, through the client and a DataLoader.

The rules: ``zstd`` gives the raw pixels byte for byte, in fewer bytes; ``jpeg`` gives pixels within the bound
docs/wire-format.md states, and the same request gives the same bytes; a raw stream is what it always was (a
Content-Length, the same request body); an encoded stream is chunked, and a failure in the middle of one still
ends with the typed error and an incomplete stream.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from augserve.devserver import ServerProcess
from augserve_client import Client
from augserve_client import epoch_batches as epoch_batches_module
from augserve_client.epoch_batches import EpochBatch
from augserve_client.protocol.errors import InvalidImageError, ProtocolError
from augserve_client.protocol.wire import Body, frame, read_frames
from conftest import flaky_server
from pydantic import ValidationError

DATASET = "encodings"
# What docs/wire-format.md promises for jpeg against raw, with room for these tiny 32x32 crops (whose edges
# weigh more than in 224x224 photos): PSNR at least, mean absolute error at most.
JPEG_BOUNDS = {90: (36.0, 2.5), 75: (32.0, 4.0)}


class Counting:
    """A body that counts the bytes the client reads from it."""

    def __init__(self, body: Body, counts: list[int]) -> None:
        self.body, self.counts = body, counts

    def readinto(self, buffer: memoryview) -> int | None:
        count = self.body.readinto(buffer)
        self.counts[-1] += count or 0
        return count


@pytest.fixture
def wire_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes the client reads from each epoch stream's body, one count per stream, in order."""
    counts: list[int] = []

    def counted(body: Body, *args: Any) -> Iterator[Any]:
        counts.append(0)
        return read_frames(Counting(body, counts), *args)

    monkeypatch.setattr(epoch_batches_module, "read_frames", counted)
    return counts


@pytest.fixture(scope="module")
def url(dataset_server: ServerProcess, indexed_files: list[Path]) -> str:
    with Client(dataset_server.url) as client:
        client.upload_dataset(DATASET, indexed_files, labels=list(range(len(indexed_files))), progress=False)
    return dataset_server.url


def epoch(url: str, spec: dict, **request: Any) -> list[EpochBatch]:
    with Client(url) as client:
        return list(client.epoch(DATASET, spec, batch_size=8, seed=11, epoch=2, retries=0, **request))


def images(batches: list[EpochBatch]) -> np.ndarray:
    return np.concatenate([batch.images for batch in batches])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def test_zstd_gives_the_raw_pixels_byte_for_byte_in_fewer_bytes(
    url: str, small_spec: dict, wire_bytes: list[int]
) -> None:
    raw = epoch(url, small_spec)
    zstd = epoch(url, small_spec, encoding="zstd")
    assert len(raw) == len(zstd) == 6
    for plain, packed in zip(raw, zstd, strict=True):
        assert packed.images.tobytes() == plain.images.tobytes()
        assert packed.images.shape == plain.images.shape and packed.images.flags.writeable
        assert (packed.number, packed.seeds, packed.padding) == (plain.number, plain.seeds, plain.padding)
        np.testing.assert_array_equal(packed.labels, plain.labels)
        assert plain.wire_bytes == plain.images.nbytes and packed.wire_bytes < 0.8 * plain.wire_bytes
    raw_read, zstd_read = wire_bytes
    assert raw_read > sum(batch.images.nbytes for batch in raw)  # the pixels, and the frames' headers
    assert zstd_read < 0.8 * raw_read, (zstd_read, raw_read)


@pytest.mark.parametrize("quality", [90, 75])
def test_jpeg_is_close_to_raw_and_the_same_request_gives_the_same_pixels(
    url: str, small_spec: dict, wire_bytes: list[int], quality: int
) -> None:
    raw = images(epoch(url, small_spec))
    first = epoch(url, small_spec, encoding="jpeg", quality=quality)
    again = images(epoch(url, small_spec, encoding="jpeg", quality=quality))
    lossy = images(first)
    assert lossy.tobytes() == again.tobytes()
    floor, mean_error = JPEG_BOUNDS[quality]
    assert psnr(lossy, raw) >= floor
    assert np.abs(lossy.astype(int) - raw).mean() <= mean_error
    assert wire_bytes[1] == wire_bytes[2] < 0.5 * wire_bytes[0]


def frame_bytes(stream: bytes) -> list[bytes]:
    """The bytes of each frame of a stream."""
    frames, offset = [], 0
    while offset < len(stream):
        length = int.from_bytes(stream[offset + 4 : offset + 8], "little")
        header = json.loads(stream[offset + 8 : offset + 8 + length])
        end = offset + 8 + length + header["nbytes"]
        frames.append(stream[offset:end])
        offset = end
    return frames


def test_an_encoded_frame_has_the_same_bytes_however_the_stream_split_its_batch(url: str, small_spec: dict) -> None:
    """A stream computes its first batch in parts, the others whole: batch 1 is a first batch when a stream is
    resumed there. Every variant is encoded on its own, so its frame's bytes are the same either way."""
    for encoding in ("zstd", "jpeg"):
        body = {"spec": small_spec, "batch_size": 8, "seed": 11, "encoding": encoding}
        whole = httpx.post(f"{url}/v1/datasets/{DATASET}/epochs", json=body).content
        resumed = httpx.post(f"{url}/v1/datasets/{DATASET}/epochs", json={**body, "start_batch": 1}).content
        assert httpx.post(f"{url}/v1/datasets/{DATASET}/epochs", json=body).content == whole
        second = frame_bytes(whole)[1]
        assert frame_bytes(resumed)[0] == second
        assert f'"encoding":"{encoding}"'.encode() in second


@pytest.mark.parametrize("batch_size", [1, 3, 48])
def test_first_batches_of_any_size_are_whole(url: str, small_spec: dict, batch_size: int) -> None:
    """A first batch is computed in 4 parts here (2 threads): fewer samples than parts leave empty ones."""
    with Client(url) as client:
        for start in (0, 1):
            request = {"batch_size": batch_size, "seed": 4, "start_batch": start, "end_batch": start + 2}
            raw = list(client.epoch(DATASET, small_spec, **request))
            zstd = list(client.epoch(DATASET, small_spec, encoding="zstd", **request))
            assert len(zstd) == len(raw) == min(2, 48 // batch_size - start)
            for plain, packed in zip(raw, zstd, strict=True):
                assert packed.images.tobytes() == plain.images.tobytes()


def test_a_raw_stream_keeps_its_length_and_an_encoded_one_is_chunked(url: str, small_spec: dict) -> None:
    body = {"spec": small_spec, "batch_size": 8, "seed": 11}
    raw = httpx.post(f"{url}/v1/datasets/{DATASET}/epochs", json=body)
    assert int(raw.headers["content-length"]) == len(raw.content) and "transfer-encoding" not in raw.headers
    for encoding in ("zstd", "jpeg"):
        encoded = httpx.post(f"{url}/v1/datasets/{DATASET}/epochs", json={**body, "encoding": encoding})
        assert encoded.status_code == 200 and encoded.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in encoded.headers
        assert encoded.headers["x-augserve-batches"] == "6" and encoded.headers["x-augserve-shape"] == "32x32x3"
        frames = list(read_frames(io.BytesIO(encoded.content)))
        assert frames[-1][0] == {"kind": "end", "batches": 6, "nbytes": 0}


def test_a_raw_request_sends_the_body_it_always_sent() -> None:
    """A raw request names no encoding, so a client with encodings still talks to a server without them."""
    sent: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, stream=httpx.ByteStream(b"".join(frame({"kind": "end", "batches": 0}))))

    with Client("http://augserve.test", transport=httpx.MockTransport(handler)) as client:
        assert list(client.epoch("pets", None)) == []
        assert list(client.epoch("pets", None, encoding="jpeg", quality=80)) == []
    assert "encoding" not in sent[0] and "quality" not in sent[0]
    assert sent[1]["encoding"] == "jpeg" and sent[1]["quality"] == 80


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"encoding": "gzip"}, "encoding"),
        ({"encoding": "zstd", "quality": 90}, "quality"),
        ({"quality": 90}, "quality"),
        ({"encoding": "jpeg", "quality": 0}, "quality"),
        ({"encoding": "jpeg", "quality": 101}, "quality"),
    ],
)
def test_a_bad_encoding_is_refused_before_streaming(url: str, fields: dict, field: str) -> None:
    response = httpx.post(f"{url}/v1/datasets/{DATASET}/epochs", json={"batch_size": 8, **fields})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request" and field in json.dumps(response.json())
    with pytest.raises(ValidationError, match=field), Client(url) as client:
        client.epoch(DATASET, None, **fields)  # refused here, before anything is sent


@pytest.mark.parametrize(("encoding", "package"), [("jpeg", "simplejpeg"), ("zstd", "zstandard")])
def test_a_missing_codec_is_one_line_naming_the_pip_install(
    url: str, monkeypatch: pytest.MonkeyPatch, encoding: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # as if it were not installed
    with pytest.raises(ImportError) as error, Client(url) as client:
        client.epoch(DATASET, None, encoding=encoding)
    assert str(error.value) == f"the {encoding} encoding needs the {package} package: pip install {package}"
    pytest.importorskip("torch")
    from augserve_client.torch_dataset import AugmentedDataset

    with pytest.raises(ImportError, match=f"pip install {package}"):
        AugmentedDataset("http://127.0.0.1:9", DATASET, {}, batch_size=8, encoding=encoding)  # before connecting


def test_importing_the_protocol_imports_no_codec() -> None:
    code = (
        "import sys, augserve_client.protocol.wire, augserve_client.protocol.epochs; "
        "print([m for m in ('zstandard', 'simplejpeg') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.fixture
def flaky(tmp_path: Path, indexed_files: list[Path]) -> Iterator[tuple[ServerProcess, Path]]:
    """The flaky folder dataset (conftest.flaky_server)."""
    with flaky_server(tmp_path, indexed_files) as opened:
        yield opened


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["zstd", "jpeg"])
def test_a_failure_mid_stream_in_an_encoded_stream_ends_it_with_its_error(
    flaky: tuple[ServerProcess, Path], encoding: str
) -> None:
    """The batches before the broken file arrive whole, then the client raises the server's typed error; the
    chunked stream itself ends with an error frame and without its last chunk, so it cannot pass for whole."""
    server, broken = flaky
    spec = {"output": {"size": [16, 16], "format": "npy"}}
    received = []
    with pytest.raises(InvalidImageError) as error, Client(server.url) as client:
        for batch in client.epoch("flaky", spec, batch_size=4, shuffle=False, retries=0, encoding=encoding):
            received.append(batch.indices.tolist())
    assert received == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert broken.name in str(error.value)

    body = {"spec": spec, "batch_size": 4, "shuffle": False, "encoding": encoding}
    data = bytearray()
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", f"{server.url}/v1/datasets/flaky/epochs", json=body) as response,
    ):
        assert response.headers["transfer-encoding"] == "chunked"
        for chunk in response.iter_raw():
            data += chunk
    frames = read_frames(io.BytesIO(bytes(data)))
    kinds = [next(frames)[0]["kind"] for _ in range(3)]
    assert kinds == ["batch", "batch", "error"]
    with pytest.raises(ProtocolError, match="before its end frame"):
        next(frames)


@pytest.mark.slow
def test_a_dataloader_with_two_workers_decodes_each_encoding(url: str, small_spec: dict) -> None:
    """The workers read, decompress and decode: zstd gives the raw tensors, jpeg tensors within the bound."""
    pytest.importorskip("torch")
    from augserve_client.torch_dataset import AugmentedDataset
    from torch.utils.data import DataLoader

    def batches(**encoding: Any) -> list[tuple[np.ndarray, list[int]]]:
        dataset = AugmentedDataset(url, DATASET, small_spec, batch_size=8, seed=5, progress=False, **encoding)
        dataset.set_epoch(1)
        loader = DataLoader(dataset, batch_size=None, num_workers=2)
        return [(images.numpy().copy(), labels.tolist()) for images, labels in loader]

    raw, zstd, jpeg = batches(), batches(encoding="zstd"), batches(encoding="jpeg", quality=90)
    assert len(raw) == len(zstd) == len(jpeg) == 6
    assert sorted(label for _, labels in raw for label in labels) == list(range(48))
    for (plain, labels), (packed, packed_labels), (lossy, lossy_labels) in zip(raw, zstd, jpeg, strict=True):
        assert labels == packed_labels == lossy_labels
        assert packed.tobytes() == plain.tobytes() and packed.shape == plain.shape == (8, 3, 32, 32)
        assert psnr(lossy, plain) >= JPEG_BOUNDS[90][0]
