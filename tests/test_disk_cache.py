"""The disk tier of the decoded-image cache: exact pixels, damaged or stale entries never served, the bound held
by concurrent writer processes; and, on a real server, exact variants and entries that survive a restart."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
from augserve.devserver import ServerProcess
from augserve.disk_cache import HEADER, DiskCache
from augserve_client import Client

ENTRY = HEADER.size + 40 * 50 * 3  # one 40x50 entry's file


def image(seed: int, height: int = 40, width: int = 50) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_an_entry_reads_back_exactly_memory_mapped_and_read_only(tmp_path: Path) -> None:
    tier = DiskCache(tmp_path, 1 << 20)
    tier.put("upload:abc", "abc", image(1))
    found = tier.get("upload:abc", "abc")
    assert found is not None
    np.testing.assert_array_equal(found, image(1))
    assert not found.flags.writeable
    assert tier.get("upload:other", "other") is None
    assert DiskCache(tmp_path, 1 << 20).get("upload:abc", "abc") is not None  # another process's instance


def flip_a_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: flip_a_bit(path, path.stat().st_size - 7),  # a pixel
        lambda path: flip_a_bit(path, 9),  # the height in the header
        lambda path: path.write_bytes(path.read_bytes()[: HEADER.size + 100]),  # a torn write
        lambda path: path.write_bytes(b""),
    ],
    ids=["pixel", "header", "truncated", "empty"],
)
def test_a_damaged_entry_is_detected_deleted_and_never_served(tmp_path: Path, damage: object) -> None:
    tier = DiskCache(tmp_path, 1 << 20)
    tier.put("k", "source", image(2))
    path = tier.path("k")
    damage(path)  # type: ignore[operator]
    assert tier.get("k", "source") is None
    assert not path.exists() and tier.stats()["rejected"] == 1
    tier.put("k", "source", image(2))  # recomputed by the caller and stored again
    np.testing.assert_array_equal(tier.get("k", "source"), image(2))


def test_an_entry_decoded_from_other_source_bytes_is_stale(tmp_path: Path) -> None:
    """A folder file changed after its pixels were stored: the source digest no longer matches."""
    tier = DiskCache(tmp_path, 1 << 20)
    tier.put("folder:pets/cat/0.png", "digest-before", image(3))
    assert tier.get("folder:pets/cat/0.png", "digest-after") is None
    assert tier.stats()["rejected"] == 1


def test_the_bound_holds_and_the_least_recently_used_go_first(tmp_path: Path) -> None:
    tier = DiskCache(tmp_path, 5 * ENTRY)
    for number in range(4):
        tier.put(f"k{number}", "s", image(number))
        os.utime(tier.path(f"k{number}"), ns=((number + 1) * 10**9,) * 2)  # used in order k0, k1, k2, k3 ...
    assert tier.get("k0", "s") is not None  # ... then k0 again: now the most recent
    tier.put("k4", "s", image(4))  # 5 entries: the bound, not beyond it
    assert tier.total_bytes() == 5 * ENTRY
    tier.put("k5", "s", image(5))  # evicts the least recently used down to 90% of the bound, then writes
    assert tier.total_bytes() <= 5 * ENTRY
    present = {f"k{number}": tier.get(f"k{number}", "s") is not None for number in range(6)}
    assert present == {"k0": True, "k1": False, "k2": False, "k3": True, "k4": True, "k5": True}
    for number in range(6, 20):
        tier.put(f"k{number}", "s", image(number))
        assert tier.total_bytes() <= 5 * ENTRY
    assert tier.total_bytes() == int((tmp_path / ".bytes").read_text())


def test_an_entry_larger_than_the_bound_is_not_kept(tmp_path: Path) -> None:
    tier = DiskCache(tmp_path, ENTRY - 1)
    tier.put("k", "s", image(4))
    assert tier.get("k", "s") is None and tier.total_bytes() == 0


def _writer(directory: Path, bound: int, first: int) -> None:
    tier = DiskCache(directory, bound)
    for number in range(first, first + 30):
        tier.put(f"k{number}", "s", image(number))


def test_concurrent_writer_processes_keep_the_bound(tmp_path: Path) -> None:
    bound = 8 * ENTRY
    context = mp.get_context("fork")
    writers = [context.Process(target=_writer, args=(tmp_path, bound, first)) for first in (0, 100, 200)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    tier = DiskCache(tmp_path, bound)
    assert 0 < tier.total_bytes() <= bound
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".k")]  # no temporary files left
    for path in tmp_path.glob("*.px"):
        assert path.stat().st_size == ENTRY  # every entry whole


# --- on real servers ---------------------------------------------------------------------------------------

SPEC = {
    "ops": [
        {"op": "reflect", "horizontal": True, "p": 0.5},
        {"op": "crop", "mode": "random_resized", "size": [32, 32], "scale": [0.5, 1.0]},
    ],
    "output": {"format": "npy"},
}


def epoch_images(url: str, dataset: str) -> np.ndarray:
    with Client(url, timeout=60) as client:
        return np.concatenate([batch.images for batch in client.epoch(dataset, SPEC, batch_size=8, seed=5, epoch=1)])


def entries(directory: Path) -> dict[str, int]:
    """Entry file names and their inodes: a rewritten entry gets a new inode (written aside, renamed)."""
    return {path.name: path.stat().st_ino for path in directory.glob("*.px")}


@pytest.mark.slow
def test_the_tier_serves_exact_variants_and_survives_a_restart(
    tmp_path: Path, dataset_server: ServerProcess, indexed: str, indexed_files: list[Path]
) -> None:
    """No RAM cache at all (cache_bytes 0): every sample comes from the disk tier or a decode. The variants are
    exactly those of a server without the tier; after a restart (a new process: as another worker would) every
    entry is read, none written again."""
    tier = tmp_path / "tier"
    settings = {"cache_bytes": 0, "disk_cache_bytes": 1 << 30, "disk_cache_dir": tier}
    server = ServerProcess(tmp_path / "data", **settings).start()
    try:
        with Client(server.url, timeout=60) as client:
            labels = list(range(len(indexed_files)))
            name = client.upload_dataset("indexed", indexed_files, labels=labels, progress=False)["name"]
        first = epoch_images(server.url, name)
        written = entries(tier)
        assert len(written) == len(indexed_files)
    finally:
        server.stop()
    np.testing.assert_array_equal(first, epoch_images(dataset_server.url, indexed))
    server = ServerProcess(tmp_path / "data", **settings).start()
    try:
        np.testing.assert_array_equal(epoch_images(server.url, name), first)
    finally:
        server.stop()
    assert entries(tier) == written
