"""Uploading a local dataset: hash every file, send only what the server lacks, then register it.

The steps and their request models are the contract in :mod:`augserve_client.protocol.datasets`. Uploads go
in batches (several requests for a large folder), and registering the same files again uploads nothing.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .protocol.datasets import IMAGE_SUFFIXES, Label, is_class_name, is_image_name

if TYPE_CHECKING:
    from .client import Client

UPLOAD_BATCH_BYTES = 32 << 20
UPLOAD_BATCH_FILES = 256


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def image_folder(folder: Path) -> tuple[list[Path], list[str]]:
    """A local ImageFolder (folder/<class>/<image>): files and their class names, in a stable order.

    What is not an image in a class folder (a text file, a subfolder) and files beside the class folders are
    left out, with a warning naming them, so a dataset is never silently smaller than the folder looks. Hidden
    files and folders (``.DS_Store``, ``._photo.jpg``, ``.ipynb_checkpoints``) are left out without one.
    """
    files, labels, skipped = [], [], []
    for entry in sorted(folder.iterdir()):
        if not (entry.is_dir() and is_class_name(entry.name)):
            skipped.append(entry)
            continue
        for file in sorted(entry.iterdir()):
            if file.is_file() and is_image_name(file.name):
                files.append(file)
                labels.append(entry.name)
            else:
                skipped.append(file)
    if not files:
        raise ValueError(f"{folder} holds no images in class subfolders (folder/<class>/<image>)")
    shown = [path.relative_to(folder).as_posix() + "/" * path.is_dir() for path in skipped if path.name[0] != "."]
    if shown:
        listed = ", ".join(shown[:5]) + (f" and {len(shown) - 5} more" if len(shown) > 5 else "")
        warnings.warn(
            f"{folder}: left out {len(shown)} {'entry' if len(shown) == 1 else 'entries'} that are not images in "
            f"class folders: {listed} (images end in {', '.join(sorted(IMAGE_SUFFIXES))})",
            UserWarning,
            stacklevel=3,
        )
    return files, labels


def upload_files(
    client: Client,
    name: str | None,
    files: Sequence[Path],
    labels: Sequence[Label] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Register ``files`` as dataset ``name``, uploading only what the server does not have yet.

    Without a name, the dataset is named after its content (``ds-`` and a hash of the file hashes and
    labels), so registering the same folder again finds the same dataset.
    """
    labels = list(labels) if labels is not None else [None] * len(files)
    if len(labels) != len(files):
        raise ValueError(f"{len(files)} files but {len(labels)} labels")
    hashes = [sha256_file(path) for path in files]
    name = name or "ds-" + hashlib.sha256(json.dumps([hashes, labels]).encode()).hexdigest()[:16]
    missing = set(client.request("POST", "/v1/blobs/missing", json={"hashes": sorted(set(hashes))}).json()["missing"])
    path_of = dict(zip(hashes, files, strict=True))
    todo = [path_of[digest] for digest in sorted(missing)]
    with _progress(progress, sum(path.stat().st_size for path in todo), f"uploading {name}") as bar:
        for batch in _batches(todo):
            payload = [("files", (path.name, path.read_bytes(), "application/octet-stream")) for path in batch]
            client.request("POST", "/v1/blobs", files=payload)
            bar(sum(path.stat().st_size for path in batch))
    items = [{"blob": digest, "label": label} for digest, label in zip(hashes, labels, strict=True)]
    return client.request("POST", "/v1/datasets", json={"name": name, "items": items}).json()


def _batches(paths: Iterable[Path]) -> Iterable[list[Path]]:
    batch: list[Path] = []
    size = 0
    for path in paths:
        if batch and (size + path.stat().st_size > UPLOAD_BATCH_BYTES or len(batch) >= UPLOAD_BATCH_FILES):
            yield batch
            batch, size = [], 0
        batch.append(path)
        size += path.stat().st_size
    if batch:
        yield batch


class _progress:
    """A tqdm bar when tqdm is installed and wanted; otherwise nothing."""

    def __init__(self, enabled: bool, total: int, description: str) -> None:
        self.bar = None
        if enabled and total:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, unit="B", unit_scale=True, desc=description)

    def __enter__(self) -> Callable[[int], None]:
        return self.bar.update if self.bar is not None else (lambda _: None)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
