"""Shared fixtures: a real server on loopback, a client, and real photos."""

from __future__ import annotations

import io
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from augserve.devserver import ServerProcess
from augserve_client import Client
from PIL import Image


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the session, with small limits so limit tests stay cheap."""
    root = tmp_path_factory.mktemp("server")
    process = ServerProcess(
        root / "data",
        max_request_bytes=4_000_000,
        max_file_bytes=3_000_000,
        max_pixels=2_000_000,
        max_images=8,
        max_variants=16,
        threads=2,
    ).start()
    yield process
    process.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def photos() -> list[np.ndarray]:
    """The two real photos scikit-learn ships (427x640 RGB: a temple in China, a flower)."""
    from sklearn.datasets import load_sample_images

    return [np.asarray(image) for image in load_sample_images().images]


@pytest.fixture(scope="session")
def photo_files(photos: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for index, photo in enumerate(photos):
        path = folder / f"photo{index}.jpg"
        Image.fromarray(photo).save(path, quality=92)
        paths.append(path)
    return paths


def encode(image: np.ndarray | Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory, photos: list[np.ndarray]) -> Path:
    """A read-only data root holding an ImageFolder ``pets`` (2 classes x 6 crops of the real photos)."""
    root = tmp_path_factory.mktemp("root")
    rng = np.random.default_rng(0)
    for label, name in enumerate(["cat", "dog"]):
        (root / "pets" / name).mkdir(parents=True)
        for index in range(6):
            y, x = rng.integers(0, 200), rng.integers(0, 400)
            Image.fromarray(photos[label][y : y + 64 + index, x : x + 80]).save(root / "pets" / name / f"{index}.png")
    return root


@pytest.fixture(scope="session")
def dataset_server(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Iterator[ServerProcess]:
    """A server with a data root for folder datasets; its data directory outlives restarts within a test."""
    process = ServerProcess(tmp_path_factory.mktemp("dataset-server") / "data", data_root=data_root, threads=2).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def indexed_files(tmp_path_factory: pytest.TempPathFactory, photos: list[np.ndarray]) -> list[Path]:
    """48 small distinct crops of the real photos; registered with label == index, so the labels a trainer
    receives say exactly which samples it got."""
    folder = tmp_path_factory.mktemp("indexed")
    paths = []
    for index in range(48):
        photo = photos[index % 2]
        y, x = (index * 7) % 300, (index * 13) % 500
        path = folder / f"{index:03d}.png"
        Image.fromarray(photo[y : y + 40, x : x + 48]).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def indexed(dataset_server: ServerProcess, indexed_files: list[Path]) -> str:
    """The 48 indexed files registered on ``dataset_server`` as ``indexed``, label == index."""
    with Client(dataset_server.url) as client:
        labels = list(range(len(indexed_files)))
        return client.upload_dataset("indexed", indexed_files, labels=labels, progress=False)["name"]


@pytest.fixture(scope="session")
def small_spec() -> dict[str, object]:
    """Every sample comes out 32x32 whatever its size: the shape a batch needs."""
    return {
        "ops": [
            {"op": "reflect", "horizontal": True, "p": 0.5},
            {"op": "rotate", "angle": [-20, 20], "p": 0.5},
            {"op": "crop", "mode": "random_resized", "size": [32, 32], "scale": [0.5, 1.0]},
        ],
        "output": {"format": "npy"},
    }


@contextmanager
def flaky_server(
    tmp_path: Path, files: list[Path], name: str = "{index:03d}.png"
) -> Iterator[tuple[ServerProcess, Path]]:
    """A server whose folder dataset "flaky" holds 12 of ``files`` (named by ``name``), the last of them broken
    after registration: a failure that can only show in the middle of an epoch."""
    folder = tmp_path / "root" / "flaky" / "all"
    folder.mkdir(parents=True)
    paths = [folder / name.format(index=index) for index in range(12)]
    for source, path in zip(files, paths, strict=False):
        path.write_bytes(source.read_bytes())
    server = ServerProcess(tmp_path / "data", data_root=tmp_path / "root", threads=2).start()
    try:
        with Client(server.url) as client:
            client.register_folder("flaky", "flaky")
        paths[-1].write_bytes(b"not an image any more")
        yield server, paths[-1]
    finally:
        server.stop()
