"""Registered datasets on disk, shared by every process that mounts the same data directory.

Layout under ``data_dir``::

    blobs/ab/ab12...ef        uploaded file bytes, named by their SHA-256 (stored once, however often sent)
    datasets/<name>.json      a dataset's manifest: keys, labels, image sizes, classes
    decoded/<xxh3>.px         the disk tier of decoded images, when on (``augserve.disk_cache``; this replica's
                              own: point ``disk_cache_dir`` at a local disk when data_dir is shared storage)

Manifests are immutable once written, and written atomically (a temporary file hard-linked into place), so two
replicas behind a load balancer see the same datasets, a half-written manifest is never read, and two replicas
creating the same name race safely: the second finds the first's manifest and either matches it (idempotent
success) or conflicts (409). Folder datasets read files under the read-only ``data_root`` and never copy them.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from augserve_client.protocol.datasets import NAME_PATTERN, is_class_name, is_image_name
from augserve_client.protocol.errors import ErrorCode

from .errors import ServiceError
from .keys import ANONYMOUS, Caller, forbidden

log = logging.getLogger("augserve.store")
NAME = re.compile(NAME_PATTERN)
HASH = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Manifest:
    """An immutable dataset: item ``i`` is ``keys[i]`` (a blob hash or a path under the root) with ``labels[i]``."""

    name: str
    kind: str  # "upload" or "folder"
    keys: list[str]
    labels: list[int]
    sizes: list[tuple[int, int]]
    bytes: int
    classes: list[str] | None = None
    folder: str | None = None
    created: str = ""
    owner: str | None = None  # the name of the key that registered it (None: registered without keys)
    layout: str | None = None  # a folder dataset's layout (uploads: None; their items carry what they have)
    masks: list[str] | None = None  # per item, its mask's key (a blob hash, or a path under the root)
    # Per item: "boxes" (pascal_voc pixels, clipped to the image), "labels", "keypoints", "keypoint_labels".
    targets: list[dict[str, Any]] | None = None
    categories: dict[str, str] | None = None  # a box or keypoint label (as a string) -> its name

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "count": len(self.keys),
            "bytes": self.bytes,
            "classes": self.classes,
            "folder": self.folder,
            "created": self.created,
            "owner": self.owner,
            "digest": self.digest(),
            "layout": self.layout,
            "targets": self.target_kinds,
            "categories": self.categories,
        }

    @property
    def has_targets(self) -> bool:
        return self.masks is not None or self.targets is not None

    @functools.cached_property
    def target_kinds(self) -> list[str]:
        """What moves with this dataset's images: some of ``masks``, ``boxes``, ``keypoints``. A scan of every
        item, done once per manifest (the store keeps manifests), not for every batch of every epoch."""
        kinds = ["masks"] if self.masks is not None else []
        for kind in ("boxes", "keypoints"):
            if self.targets is not None and any(item[kind] for item in self.targets):
                kinds.append(kind)
        return kinds

    def digest(self) -> str:
        """A hash of what the dataset serves (items, labels, classes, targets): replicas that agree on it serve
        the same samples, so a client spreading one epoch over them can check it (``created`` may differ)."""
        content = json.dumps([getattr(self, field) for field in self._content()], separators=(",", ":"))
        return hashlib.sha256(content.encode()).hexdigest()

    def decoded_key(self, index: int) -> str:
        """The key of item ``index``'s decoded pixels in the decoded-image cache."""
        return decoded_key(self.kind, self.keys[index])

    def mask_key(self, index: int) -> str:
        """The key of item ``index``'s decoded mask in the decoded-image cache."""
        assert self.masks is not None
        return "mask:" + decoded_key(self.kind, self.masks[index])

    def same_content(self, other: Manifest) -> bool:
        return all(getattr(self, field) == getattr(other, field) for field in self._content())

    def _content(self) -> tuple[str, ...]:
        """The fields that make what the dataset serves (a dataset without targets hashes as it always did)."""
        plain = ("kind", "keys", "labels", "classes")
        return (*plain, "masks", "targets", "categories") if self.has_targets else plain


class DatasetStore:
    """Blobs and manifests under ``data_dir``; folder datasets under ``data_root``."""

    def __init__(self, data_dir: Path, data_root: Path | None) -> None:
        self.blobs = data_dir / "blobs"
        self.manifests = data_dir / "datasets"
        self.root = data_root.resolve() if data_root is not None else None
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.manifests.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, tuple[int, Manifest]] = {}
        self._lock = threading.Lock()

    # --- blobs -------------------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.blobs / digest[:2] / digest

    def missing(self, digests: list[str]) -> list[str]:
        for digest in digests:
            if not HASH.match(digest):
                raise ServiceError(
                    ErrorCode.INVALID_REQUEST, f"{digest!r} is not a lowercase SHA-256 hex digest", field="hashes"
                )
        present, missing = [], []
        for digest in digests:
            (present if self.blob_path(digest).exists() else missing).append(digest)
        for digest in present:  # about to be referenced: fresh again, so reclaiming leaves it (see reclaim.py)
            _touch(self.blob_path(digest))
        return missing

    def put_blob(self, data: bytes) -> str:
        """Store ``data`` under its SHA-256 (once: an existing blob is left alone) and return the digest."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if path.exists():
            _touch(path)
        else:
            path.parent.mkdir(exist_ok=True)
            _write_atomically(path, data, replace=True)
        return digest

    # --- manifests ---------------------------------------------------------------------------------------

    def create(self, manifest: Manifest) -> tuple[Manifest, bool]:
        """Store a new manifest; returns (stored manifest, created?). Same name and content is not an error."""
        check_name(manifest.name)
        path = self._manifest_path(manifest.name)
        payload = json.dumps(asdict(manifest), separators=(",", ":")).encode()
        if _write_atomically(path, payload, replace=False):
            return manifest, True
        existing = self.get(manifest.name)
        if not existing.same_content(manifest):
            raise ServiceError(
                ErrorCode.CONFLICT,
                f"dataset {manifest.name!r} exists with other content; delete it or choose another name",
                field="name",
            )
        return existing, False

    def get(self, name: str) -> Manifest:
        check_name(name)
        path = self._manifest_path(name)
        try:
            mtime = path.stat().st_mtime_ns
            with self._lock:
                cached = self._cache.get(name)
            if cached and cached[0] == mtime:
                return cached[1]
            raw = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise ServiceError(ErrorCode.NOT_FOUND, f"no dataset named {name!r}", field="name") from None
        manifest = Manifest(**{**raw, "sizes": [tuple(size) for size in raw["sizes"]]})
        with self._lock:
            self._cache[name] = (mtime, manifest)
        return manifest

    def list(self) -> list[Manifest]:
        names = sorted(path.stem for path in self.manifests.glob("*.json"))
        manifests = []
        for name in names:
            try:
                manifests.append(self.get(name))
            except ServiceError:  # deleted by another replica while we listed
                continue
        return manifests

    def delete(self, name: str, caller: Caller = ANONYMOUS) -> None:
        """Remove the manifest, if ``caller`` owns it or is an admin. Its blobs stay here (other datasets may
        share them): reclaiming the ones nothing lists is :func:`augserve.reclaim.reclaim_blobs`'s."""
        manifest = self.get(name)
        if not caller.may("admin") and manifest.owner != caller.name:
            raise forbidden(f"dataset {name!r} belongs to {manifest.owner!r}; only its owner or an admin may delete it")
        try:
            self._manifest_path(name).unlink()
        except FileNotFoundError:
            raise ServiceError(ErrorCode.NOT_FOUND, f"no dataset named {name!r}", field="name") from None
        with self._lock:
            self._cache.pop(name, None)

    def _manifest_path(self, name: str) -> Path:
        return self.manifests / f"{name}.json"

    # --- items -------------------------------------------------------------------------------------------

    def root_path(self, key: str) -> Path:
        """Where a folder dataset's item ``key`` (a path relative to the root) lies."""
        assert self.root is not None, "folder datasets need data_root"
        return self.root / key

    def read(self, manifest: Manifest, index: int, mask: bool = False) -> bytes:
        """An item's bytes (``mask``: its mask's)."""
        key = manifest.masks[index] if mask and manifest.masks is not None else manifest.keys[index]
        return self.read_key(manifest.kind, key)

    def read_key(self, kind: str, key: str) -> bytes:
        """The bytes of a blob (``kind`` upload) or of a file under the root (folder). A folder dataset's file is
        checked again as it is opened: a file swapped for a symlink (or a folder for one) after it was listed
        must not serve what lies outside the root."""
        if kind == "upload":
            return self.blob_path(key).read_bytes()
        path = self.root_path(key)
        fd = os.open(path, os.O_RDONLY)
        try:
            self.inside_root(_opened_path(fd, path), key)
            with open(fd, "rb", closefd=False) as file:
                return file.read()
        finally:
            os.close(fd)

    # --- folders -----------------------------------------------------------------------------------------

    def folder_files(self, folder: str) -> tuple[list[str], list[int], list[str]]:
        """An ImageFolder under the root: (paths relative to the root, class indices, class names).

        Refuses absolute paths, ``..`` and anything (the folder, a class directory, a file) whose real path,
        symlinks followed, lies outside the root. What is not an image in a class folder, and files beside the
        class folders, are left out; the server log names them (hidden files excepted).
        """
        base = self.folder_base(folder)
        classes = sorted(entry.name for entry in base.iterdir() if entry.is_dir() and is_class_name(entry.name))
        paths, labels = [], []
        skipped = sorted(entry.name for entry in base.iterdir() if not entry.is_dir() and entry.name[0] != ".")
        for label, name in enumerate(classes):
            class_dir = self.inside_root(base / name, f"{folder}/{name}")
            for file in sorted(class_dir.iterdir()):
                if is_image_name(file.name) and file.is_file():
                    real = self.inside_root(file, f"{folder}/{name}/{file.name}")
                    paths.append(str(real.relative_to(self.root)))
                    labels.append(label)
                elif file.name[0] != ".":  # hidden files (.DS_Store) go unmentioned
                    skipped.append(f"{name}/{file.name}" + "/" * file.is_dir())
        if not paths:
            raise ServiceError(
                ErrorCode.INVALID_REQUEST,
                f"folder {folder!r} holds no images in class subfolders (ImageFolder layout: folder/<class>/<image>)",
                field="folder",
            )
        if skipped:  # the registered count is smaller than the folder looks: say what was left out
            log.warning(
                "folder %r: left out %d entries that are not images in class folders: %s%s",
                folder,
                len(skipped),
                ", ".join(skipped[:5]),
                f" and {len(skipped) - 5} more" if len(skipped) > 5 else "",
            )
        return paths, labels, classes

    def folder_base(self, folder: str) -> Path:
        """The real path of ``folder`` under the root, refusing absolute paths, ``..`` and what leads outside."""
        if self.root is None:
            raise ServiceError(
                ErrorCode.INVALID_REQUEST,
                "this server has no data_root for folder datasets",
                field="folder",
                limit="data_root",
            )
        if Path(folder).is_absolute() or ".." in Path(folder).parts:
            raise ServiceError(
                ErrorCode.PATH_OUTSIDE_ROOT,
                f"folder {folder!r} must be relative to the data root and must not contain '..'",
                field="folder",
            )
        base = self.inside_root(self.root / folder, folder)
        if not base.is_dir():
            raise ServiceError(
                ErrorCode.NOT_FOUND, f"folder {folder!r} does not exist under the data root", field="folder"
            )
        return base

    def inside_root(self, path: Path, shown: str) -> Path:
        """``path`` with its links resolved, or a refusal naming ``shown`` when that leads outside the root."""
        assert self.root is not None
        real = path.resolve()
        if not real.is_relative_to(self.root):
            raise ServiceError(ErrorCode.PATH_OUTSIDE_ROOT, f"{shown!r} leads outside the data root", field="folder")
        return real


def _opened_path(fd: int, path: Path) -> Path:
    """The real path of the file open as ``fd``: where Linux shows it (``/proc/self/fd``), exactly the file
    that will be read, whatever was swapped since; elsewhere ``path`` with its links resolved."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return path.resolve()


def decoded_key(kind: str, key: str) -> str:
    """The decoded-image cache's key for an item: blobs are shared by every upload dataset, folder files by
    every folder dataset that lists them."""
    return f"{kind}:{key}"


def check_name(name: str) -> None:
    if not NAME.match(name):
        raise ServiceError(ErrorCode.INVALID_REQUEST, f"dataset name {name!r} must match {NAME.pattern}", field="name")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _touch(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):  # reclaimed meanwhile: the caller's next step says so
        os.utime(path)


def _write_atomically(path: Path, data: bytes, replace: bool) -> bool:
    """Write via a temporary file; with ``replace=False`` never overwrite (returns False if ``path`` exists).
    A full disk is a 507 and leaves nothing behind: not the temporary file, not a partial ``path``."""
    try:
        return _write_via_temporary(path, data, replace)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        message = f"the server's data dir is full; {len(data)} bytes could not be stored"
        raise ServiceError(ErrorCode.INSUFFICIENT_STORAGE, message) from None


def _write_via_temporary(path: Path, data: bytes, replace: bool) -> bool:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        if replace:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
