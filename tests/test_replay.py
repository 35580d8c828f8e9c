"""POST /v1/datasets/{name}/replay against real servers: every sample of an epoch, made again on its own, is
byte for byte the copy the epoch stream delivered (whatever batch and shard carried it), in both decode modes,
with the parameters it drew; and an index past the dataset is a 409 naming it (the dataset is there: a 404
would say it is not)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from augserve.devserver import ServerProcess
from augserve_client import Client, ConflictError, NotFoundError
from conftest import encode

pytestmark = pytest.mark.slow


def delivered(client: Client, dataset: str, spec: dict[str, object], **request: object) -> dict[int, np.ndarray]:
    """Every sample's pixels as the epoch stream delivered them, by dataset index (padding left out)."""
    samples: dict[int, np.ndarray] = {}
    for batch in client.epoch(dataset, spec, batch_size=7, **request):
        for slot, index in enumerate(batch.indices[: len(batch.indices) - batch.padding]):
            samples[int(index)] = batch.images[slot].copy()
    return samples


def test_every_sample_of_an_epoch_replays_to_its_bytes(
    dataset_server: ServerProcess, indexed: str, small_spec: dict[str, object]
) -> None:
    with Client(dataset_server.url) as client:
        samples = delivered(client, indexed, small_spec, seed=7, epoch=3, shard_index=1, shard_count=2)
        assert len(samples) == 24
        for index, pixels in samples.items():
            again = client.replay(indexed, small_spec, index=index, seed=7, epoch=3)
            assert np.array_equal(again.image, pixels), index
            assert again.meta["index"] == index == again.meta["label"]  # the indexed set's label is its index
            assert again.meta["applied"] and again.meta["applied"][-1]["transform"] == "RandomResizedCrop"


def test_another_epoch_or_seed_is_another_variant(
    dataset_server: ServerProcess, indexed: str, small_spec: dict[str, object]
) -> None:
    with Client(dataset_server.url) as client:
        first = client.replay(indexed, small_spec, index=5, seed=7, epoch=3).image
        assert np.array_equal(first, client.replay(indexed, small_spec, index=5, seed=7, epoch=3).image)
        assert not np.array_equal(first, client.replay(indexed, small_spec, index=5, seed=7, epoch=4).image)
        assert not np.array_equal(first, client.replay(indexed, small_spec, index=5, seed=8, epoch=3).image)


def test_a_bad_index_or_dataset_is_named(
    dataset_server: ServerProcess, indexed: str, small_spec: dict[str, object]
) -> None:
    with Client(dataset_server.url) as client:
        with pytest.raises(ConflictError) as caught:
            client.replay(indexed, small_spec, index=48)
        assert caught.value.field == "index" and "48 samples" in caught.value.message
        with pytest.raises(NotFoundError):
            client.replay("no-such-dataset", small_spec, index=0)


@pytest.fixture(scope="module")
def fast_server(tmp_path_factory: pytest.TempPathFactory, photos: list[np.ndarray]) -> Iterator[tuple[str, str]]:
    """A server in the fast decode mode with six JPEGs big enough for DCT-scaled decodes to kick in."""
    folder = tmp_path_factory.mktemp("fast-jpegs")
    files = []
    for index in range(6):
        path = folder / f"{index}.jpg"
        path.write_bytes(encode(photos[index % 2][index * 10 :, index * 20 :], "JPEG", quality=90))
        files.append(path)
    server = ServerProcess(tmp_path_factory.mktemp("fast") / "data", threads=2, decode="fast").start()
    with Client(server.url) as client:
        name = client.upload_dataset("fast-jpegs", [Path(file) for file in files], progress=False)["name"]
    yield server.url, name
    server.stop()


def test_fast_decoding_replays_to_the_same_bytes(fast_server: tuple[str, str]) -> None:
    url, name = fast_server
    spec = {"ops": [{"op": "crop", "mode": "random_resized", "size": [48, 48], "scale": [0.05, 0.3]}]}
    with Client(url) as client:
        samples = delivered(client, name, spec, seed=1, epoch=0)
        assert len(samples) == 6
        for index, pixels in samples.items():
            assert np.array_equal(client.replay(name, spec, index=index, seed=1).image, pixels), index
