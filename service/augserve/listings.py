"""What a registration lists, from each source: uploaded items, or a folder under the data root in one of the
layouts (:data:`augserve_client.protocol.datasets.LAYOUTS`). Only names and annotations are read here; the
files themselves are read, and checked against their targets, by :mod:`.registration`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from augserve_client.protocol.datasets import CreateDataset, is_image_name
from augserve_client.protocol.errors import ErrorCode
from augserve_client.protocol.layouts import (
    COCO_PATTERN,
    IMAGES,
    MASKS,
    LayoutError,
    coco_file,
    coco_images,
    segmentation_pairs,
)
from augserve_client.protocol.targets import ImageTargets

from .errors import ServiceError, limit_exceeded
from .store import DatasetStore


@dataclass(frozen=True)
class Listing:
    """Item ``i`` is ``keys[i]`` with image label ``labels[i]``; with targets, its mask's key ``masks[i]`` and
    its boxes and keypoints ``targets[i]`` (boxes in ``box_format``). ``fields[i]`` says where item ``i``'s
    targets came from, to name them in an error (``items[3].targets``, ``instances_val.json``)."""

    keys: list[str]
    labels: list[int]
    names: list[str]  # what an error calls each item's file
    classes: list[str] | None = None
    masks: list[str] | None = None
    targets: list[ImageTargets | None] | None = None
    fields: list[str] | None = None
    box_format: str = "pascal_voc"
    categories: dict[str, str] | None = None
    box_sources: list[list[str]] | None = None  # per item, per box: the annotation it came from (coco)


def folder_listing(store: DatasetStore, body: CreateDataset, max_annotation_bytes: int) -> Listing:
    """The listing of ``body.folder`` in ``body.layout`` (a COCO file of at most ``max_annotation_bytes``)."""
    assert body.folder is not None
    if body.layout == "imagefolder":
        keys, labels, classes = store.folder_files(body.folder)
        return Listing(keys, labels, keys, classes)
    base = store.folder_base(body.folder)
    try:
        if body.layout == "segmentation":
            return _segmentation(store, body.folder, base)
        return _coco(store, body, base, max_annotation_bytes)
    except LayoutError as error:
        raise ServiceError(
            ErrorCode.INVALID_TARGETS, str(error), field=error.field or "folder", file=error.file
        ) from None


def _segmentation(store: DatasetStore, folder: str, base: Path) -> Listing:
    sides = {side: _images_in(store, base / side, f"{folder}/{side}") for side in (IMAGES, MASKS)}
    pairs = segmentation_pairs(list(sides[IMAGES]), list(sides[MASKS]))
    keys = [sides[IMAGES][image] for image, _ in pairs]
    masks = [sides[MASKS][mask] for _, mask in pairs]
    return Listing(keys, [-1] * len(keys), keys, masks=masks, targets=[None] * len(keys), fields=masks)


def _images_in(store: DatasetStore, directory: Path, shown: str) -> dict[str, str]:
    """Image file name -> its key (path relative to the root) in ``directory``."""
    if not directory.is_dir():
        raise LayoutError(f"{shown}/ does not exist (segmentation layout: {IMAGES}/ and {MASKS}/ side by side)")
    real = store.inside_root(directory, shown)
    assert store.root is not None
    return {
        file.name: str(store.inside_root(file, f"{shown}/{file.name}").relative_to(store.root))
        for file in sorted(real.iterdir())
        if is_image_name(file.name) and file.is_file()
    }


def _coco(store: DatasetStore, body: CreateDataset, base: Path, max_bytes: int) -> Listing:
    assert body.folder is not None and store.root is not None
    names = [entry.name for entry in base.iterdir() if entry.is_file()]
    if body.annotations is None and not any(PurePosixPath(name).match(COCO_PATTERN) for name in names):
        message = f"folder {body.folder!r} holds no {COCO_PATTERN} (a coco folder: images and their annotation file)"
        raise ServiceError(ErrorCode.NOT_FOUND, message, field="folder")
    annotations = body.annotations or coco_file(names)
    path = store.inside_root(base / annotations, f"{body.folder}/{annotations}")
    if not path.is_file():
        message = f"{body.folder}/{annotations} does not exist"
        raise ServiceError(ErrorCode.NOT_FOUND, message, field="annotations", file=annotations)
    if path.stat().st_size > max_bytes:
        message = f"{annotations} has {path.stat().st_size} bytes"
        raise limit_exceeded(ErrorCode.FILE_TOO_LARGE, "max_annotation_bytes", max_bytes, message, file=annotations)
    try:
        document = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as error:
        raise LayoutError(f"{annotations} is not JSON: {error}", file=annotations) from None
    images, categories = coco_images(document, annotations)
    keys = []
    for image in images:
        file = base / image.file_name
        if Path(image.file_name).is_absolute() or ".." in Path(image.file_name).parts or not file.is_file():
            message = f"{annotations} lists image {image.file_name!r}, which is not a file in {body.folder}/"
            raise LayoutError(message, file=annotations, field="images")
        keys.append(str(store.inside_root(file, f"{body.folder}/{image.file_name}").relative_to(store.root)))
    return Listing(
        keys,
        [-1] * len(keys),
        keys,
        targets=[image.targets for image in images],
        fields=[annotations] * len(keys),
        box_format="coco",
        categories=categories,
        box_sources=[image.sources for image in images],
    )


def upload_listing(body: CreateDataset) -> Listing:
    """The listing of ``body.items``: blobs with labels, and masks and targets where items carry them."""
    assert body.items is not None
    keys = [item.blob for item in body.items]
    labels, classes = _labels([item.label for item in body.items])
    with_mask = any(item.mask is not None for item in body.items)  # then every item has one (CreateDataset)
    masks = [item.mask for item in body.items if item.mask is not None] if with_mask else None
    with_targets = any(item.targets is not None for item in body.items)
    targets = [item.targets for item in body.items] if with_targets or masks else None
    fields = [f"items[{index}]" for index in range(len(keys))]
    return Listing(keys, labels, keys, classes, masks, targets, fields, body.box_format, body.categories)


def _labels(raw: list[int | str | None]) -> tuple[list[int], list[str] | None]:
    """Integer labels stay; string labels become indices into their sorted set (returned as classes); none -> -1."""
    if any(isinstance(label, str) for label in raw):
        classes = sorted({str(label) for label in raw if label is not None})
        return [classes.index(str(label)) if label is not None else -1 for label in raw], classes
    return [-1 if label is None else int(label) for label in raw], None
