"""Shared fixtures: a real server on loopback, a client, and real photos."""

from __future__ import annotations

import io
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from augserve_client import Client
from PIL import Image
from servers import ServerProcess


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
