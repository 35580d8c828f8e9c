"""The second cache tier: decoded images in files on local disk, memory-mapped, shared by a replica's workers.

A set larger than RAM but smaller than the disk then decodes once, not once per epoch: a hit costs a page-cache
read and a hash (xxh3, tens of GB/s) instead of a JPEG decode. Every worker process maps the same files, so the
page cache holds one copy however many workers read it, and the files survive restarts.

An entry is one file, ``<xxh3-128 of the key>.px``: a 64-byte header (magic, height, width, the key's digest,
the source's digest, the pixels' digest) and the raw HxWx3 pixels. A read checks all three digests: a file
whose pixels do not hash to its header (a torn or damaged write, a flipped bit), that belongs to another key, or
that was decoded from other source bytes (a folder file changed since) is deleted and reported as a miss, so the
caller decodes again; such pixels are never served. Entries are written to a temporary file and renamed into
place, never modified afterwards.

The bound holds across processes: writers take an ``flock`` on ``.lock`` and keep the total in ``.bytes``;
when a write would pass ``max_bytes``, the writer scans the directory (recounting the total, so a crashed
writer's drift heals) and deletes least recently used entries (hits touch an entry's mtime) down to
:data:`LOW_WATER` of the bound, so a scan is rare, not once per write.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xxhash

log = logging.getLogger("augserve.disk_cache")
MAGIC = b"AUGPX\x00\x01\x00"
HEADER = struct.Struct("<8sII16s16s16s")  # magic, height, width, key, source, pixels: 64 bytes
SUFFIX = ".px"
LOW_WATER = 0.9  # an eviction frees down to this share of the bound
_SHARED: dict[tuple[Path, int], DiskCache] = {}
_SHARED_LOCK = threading.Lock()


def digest(data: bytes | memoryview | np.ndarray) -> bytes:
    return xxhash.xxh3_128_digest(data)


class DiskCache:
    """Decoded HxWx3 uint8 images on disk, bounded by ``max_bytes`` of entry files across all processes."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory, self.max_bytes = directory, max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._ledger = directory / ".bytes"
        self._lock_path = directory / ".lock"
        self.hits = self.misses = self.rejected = 0

    @classmethod
    def shared(cls, directory: Path, max_bytes: int) -> DiskCache:
        """One instance per directory and bound in a process (every request of a worker shares it)."""
        with _SHARED_LOCK:
            found = _SHARED.get((directory, max_bytes))
            if found is None:
                found = _SHARED[(directory, max_bytes)] = cls(directory, max_bytes)
            return found

    def path(self, key: str) -> Path:
        return self.directory / f"{xxhash.xxh3_128_hexdigest(key.encode())}{SUFFIX}"

    def get(self, key: str, source: str) -> np.ndarray | None:
        """The pixels stored for ``key`` decoded from ``source`` (a digest of the source bytes), read-only and
        memory-mapped; None when absent, or when the entry fails a check (it is then deleted)."""
        path = self.path(key)
        try:
            with open(path, "rb") as file:
                pixels = self._checked(_mapped(file.fileno()), key, source)
        except FileNotFoundError:
            self.misses += 1
            return None
        if pixels is None:
            self.rejected += 1
            self.misses += 1
            log.warning("disk cache: %s failed its check (key %s); deleted, decoding again", path.name, key)
            path.unlink(missing_ok=True)
            return None
        self.hits += 1
        os.utime(path)  # least recently used is by mtime
        return pixels

    def _checked(self, mapped: mmap.mmap | None, key: str, source: str) -> np.ndarray | None:
        if mapped is None or len(mapped) < HEADER.size:
            return None
        magic, height, width, key_sum, source_sum, pixel_sum = HEADER.unpack_from(mapped)
        if magic != MAGIC or len(mapped) != HEADER.size + height * width * 3:
            return None
        if key_sum != digest(key.encode()) or source_sum != digest(source.encode()):
            return None
        pixels = np.frombuffer(mapped, np.uint8, offset=HEADER.size).reshape(height, width, 3)
        return pixels if digest(pixels) == pixel_sum else None

    def put(self, key: str, source: str, pixels: np.ndarray) -> None:
        """Store ``pixels`` (HxWx3 uint8) for ``key``; entries larger than the whole bound are not kept."""
        size = HEADER.size + pixels.nbytes
        if size > self.max_bytes:
            return
        pixels = np.ascontiguousarray(pixels)
        height, width = pixels.shape[:2]
        header = HEADER.pack(MAGIC, height, width, digest(key.encode()), digest(source.encode()), digest(pixels))
        path = self.path(key)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            with open(temporary, "wb") as file:
                file.write(header)
                file.write(pixels.data)
            with self._locked():
                total = self._total()
                replaced = _size(path)
                if total - replaced + size > self.max_bytes:
                    total = self._evict(self.max_bytes * LOW_WATER - size, keep=path)
                    replaced = _size(path)
                os.replace(temporary, path)
                self._write_total(total - replaced + size)
        except OSError as error:  # a full or read-only disk: the tier is an optimisation, never a failure
            log.warning("disk cache: could not store %s: %s", path.name, error)
        finally:
            temporary.unlink(missing_ok=True)

    def total_bytes(self) -> int:
        """The bytes of every entry file now (a scan; the ledger is what writers use)."""
        return sum(entry.stat().st_size for entry in self._entries())

    def _entries(self) -> Iterator[os.DirEntry[str]]:
        with os.scandir(self.directory) as entries:
            yield from (entry for entry in entries if entry.name.endswith(SUFFIX) and not entry.name.startswith("."))

    def _evict(self, target: float, keep: Path) -> int:
        """Delete least recently used entries until the total is at most ``target``; returns the new total."""
        found = []
        for entry in self._entries():
            try:
                stat = entry.stat()
            except FileNotFoundError:
                continue
            found.append((stat.st_mtime_ns, stat.st_size, entry.path))
        total = sum(size for _, size, _ in found)
        for _, size, path in sorted(found):
            if total <= target:
                break
            if path != str(keep):
                Path(path).unlink(missing_ok=True)
                total -= size
        return total

    def _total(self) -> int:
        try:
            return int(self._ledger.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return self.total_bytes()

    def _write_total(self, total: int) -> None:
        self._ledger.write_text(str(max(0, total)))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "rejected": self.rejected, "max_bytes": self.max_bytes}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _mapped(fd: int) -> mmap.mmap | None:
    """The whole file, read-only; None for an empty one (which cannot be mapped, and is no entry)."""
    try:
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except ValueError:
        return None
