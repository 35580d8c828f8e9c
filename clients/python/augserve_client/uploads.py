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

from .protocol.datasets import IMAGE_SUFFIXES, Label, Layout, is_class_name, is_image_name
from .protocol.layouts import COCO_PATTERN, IMAGES, MASKS, LayoutError, coco_file, coco_images, segmentation_pairs
from .protocol.targets import BoxFormat, ImageTargets

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
            stacklevel=4,
        )
    return files, labels


def folder_layout(folder: Path) -> Layout:
    """The layout a local folder is in: ``segmentation`` when it holds ``images/`` and ``masks/`` and no other
    folder, ``coco`` when it holds one ``instances_*.json``, else ``imagefolder``."""
    folders = {entry.name for entry in folder.iterdir() if entry.is_dir() and is_class_name(entry.name)}
    if folders == {IMAGES, MASKS}:
        return "segmentation"
    if len(list(folder.glob(COCO_PATTERN))) == 1:
        return "coco"
    return "imagefolder"


def upload_layout(client: Client, name: str | None, folder: Path, layout: Layout, progress: bool) -> dict[str, Any]:
    """Register a local folder in ``layout`` (:mod:`.protocol.layouts`), uploading what the server lacks."""
    if layout == "imagefolder":
        files, labels = image_folder(folder)
        return upload_files(client, name, files, labels, progress)
    if layout == "segmentation":
        names = {
            side: [f.name for f in (folder / side).iterdir() if f.is_file() and is_image_name(f.name)]
            if (folder / side).is_dir()
            else []  # then the pairing names what is missing
            for side in (IMAGES, MASKS)
        }
        pairs = segmentation_pairs(names[IMAGES], names[MASKS])
        images = [folder / IMAGES / image for image, _ in pairs]
        return upload_files(client, name, images, progress=progress, masks=[folder / MASKS / mask for _, mask in pairs])
    annotations = coco_file([entry.name for entry in folder.iterdir() if entry.is_file()])
    found, categories = coco_images(json.loads((folder / annotations).read_bytes()), annotations)
    missing = [image.file_name for image in found if not (folder / image.file_name).is_file()]
    if missing:
        raise LayoutError(
            f"{annotations} lists image {missing[0]!r}, which is not a file in {folder}", file=annotations
        )
    files = [folder / image.file_name for image in found]
    targets = [image.targets for image in found]
    return upload_files(
        client, name, files, progress=progress, targets=targets, box_format="coco", categories=categories
    )


def upload_files(
    client: Client,
    name: str | None,
    files: Sequence[Path],
    labels: Sequence[Label] | None = None,
    progress: bool = True,
    *,
    masks: Sequence[Path] | None = None,
    targets: Sequence[ImageTargets | None] | None = None,
    box_format: BoxFormat = "pascal_voc",
    categories: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Register ``files`` as dataset ``name``, uploading only what the server does not have yet; with
    ``masks`` (one per file) and ``targets`` (boxes in ``box_format``, keypoints), a dataset with targets;
    ``categories`` names their integer labels.

    Without a name, the dataset is named after its content (``ds-`` and a hash of the file hashes, labels and
    targets), so registering the same folder again finds the same dataset.
    """
    labels = list(labels) if labels is not None else [None] * len(files)
    for given, what in ((labels, "labels"), (masks, "masks"), (targets, "targets")):
        if given is not None and len(given) != len(files):
            raise ValueError(f"{len(files)} files but {len(given)} {what}")
    hashes = [sha256_file(path) for path in files]
    mask_hashes = [sha256_file(path) for path in masks] if masks is not None else None
    shown = [t.model_dump(mode="json") if t is not None else None for t in targets] if targets is not None else None
    content = [hashes, labels, *([mask_hashes, shown, box_format] if masks or targets else [])]
    name = name or "ds-" + hashlib.sha256(json.dumps(content).encode()).hexdigest()[:16]
    _upload_missing(
        client, name, [*zip(hashes, files, strict=True), *zip(mask_hashes or [], masks or [], strict=True)], progress
    )
    items: list[dict[str, Any]] = [
        {"blob": digest, "label": label} for digest, label in zip(hashes, labels, strict=True)
    ]
    for index, item in enumerate(items):
        if mask_hashes is not None:
            item["mask"] = mask_hashes[index]
        if shown is not None and shown[index] is not None:
            item["targets"] = shown[index]
    body: dict[str, Any] = {"name": name, "items": items}
    if box_format != "pascal_voc":
        body["box_format"] = box_format
    if categories:
        body["categories"] = categories
    return client.request("POST", "/v1/datasets", json=body).json()


def _upload_missing(client: Client, name: str, files: list[tuple[str, Path]], progress: bool) -> None:
    path_of = dict(files)
    missing = set(client.request("POST", "/v1/blobs/missing", json={"hashes": sorted(path_of)}).json()["missing"])
    todo = [path_of[digest] for digest in sorted(missing)]
    with _progress(progress, sum(path.stat().st_size for path in todo), f"uploading {name}") as bar:
        for batch in _batches(todo):
            payload = [("files", (path.name, path.read_bytes(), "application/octet-stream")) for path in batch]
            client.request("POST", "/v1/blobs", files=payload)
            bar(sum(path.stat().st_size for path in batch))


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
