"""The data dir kept honest: deleting datasets reclaims blobs nothing lists (never a fresh one a registration
is about to list), and a full disk is a 507 that leaves nothing partial behind. Real servers; the full disk
is a real tmpfs mounted for the test."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from augserve.devserver import ServerProcess
from augserve_client import Client
from conftest import encode

pytestmark = pytest.mark.slow


def blobs(data_dir: Path) -> set[str]:
    return {path.name for path in (data_dir / "blobs").glob("*/*") if not path.name.startswith(".")}


def test_deleting_a_dataset_reclaims_only_blobs_nothing_lists(tmp_path: Path, indexed_files: list[Path]) -> None:
    server = ServerProcess(tmp_path / "data", blob_grace_seconds=0).start()
    try:
        with Client(server.url) as client:
            client.upload_dataset("a", indexed_files[:4], progress=False)
            client.upload_dataset("b", indexed_files[3:6], progress=False)  # shares one file with "a"
            both = blobs(server.data_dir)
            client.delete_dataset("a")
            left = blobs(server.data_dir)
            assert len(both) == 6 and len(left) == 3  # b's three, the shared one among them
            assert [batch.number for batch in client.epoch("b", {"output": {"size": 8, "format": "npy"}})] == [0]
    finally:
        server.stop()


def test_a_blob_uploaded_for_a_registration_in_progress_is_kept(tmp_path: Path, indexed_files: list[Path]) -> None:
    server = ServerProcess(tmp_path / "data", blob_grace_seconds=600).start()
    try:
        with Client(server.url) as client:
            client.upload_dataset("gone", indexed_files[:2], progress=False)
            sent = client.request("POST", "/v1/blobs", files=[("files", ("x.png", indexed_files[9].read_bytes()))])
            client.delete_dataset("gone")  # its blobs, and the unlisted fresh one, are within the grace period
            assert sent.json()["blobs"][0]["sha256"] in blobs(server.data_dir)
            assert len(blobs(server.data_dir)) == 3
    finally:
        server.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a disk that really fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_a_507_and_leaves_nothing_partial(small_disk: Path) -> None:
    server = ServerProcess(small_disk / "data", log=small_disk.parent / "server.log").start()
    noise = np.random.default_rng(0)
    try:
        answers = []
        for index in range(12):  # ~700 KB of incompressible PNG each: the 4 MiB fill up
            png = encode(noise.integers(0, 256, (400, 600, 3), dtype=np.uint8), "PNG")
            response = httpx.post(f"{server.url}/v1/blobs", files=[("files", (f"{index}.png", png))], timeout=30)
            answers.append((response.status_code, response.json()))
        statuses = [status for status, _ in answers]
        assert 200 in statuses and 507 in statuses and set(statuses) <= {200, 507}
        assert all(body["code"] == "insufficient_storage" for status, body in answers if status == 507)
        assert not list((small_disk / "data").rglob(".tmp-*"))  # no partial file left behind
        stored = {body["blobs"][0]["sha256"] for status, body in answers if status == 200}
        assert blobs(small_disk / "data") == stored  # every blob on disk is whole and answered for
        assert httpx.get(f"{server.url}/readyz").status_code == 200
    finally:
        server.stop()
