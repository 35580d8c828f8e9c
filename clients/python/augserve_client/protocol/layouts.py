"""Dataset layouts with targets, read the same way from a client's disk and under the server's data root.

- **segmentation**: ``images/`` and ``masks/`` side by side; an image and its mask share a stem
  (``images/0001.jpg`` and ``masks/0001.png``). Every image needs its mask and every mask its image: a
  leftover on either side means the pairing is not what the folder's owner thinks, so it is refused by name.
- **coco**: images and one COCO detection file (``instances_*.json``) in the same folder. Each annotation's
  ``bbox`` (COCO's ``[x, y, width, height]`` in pixels) and ``category_id`` become a box and its label; images
  without annotations stay, with no boxes (negatives). Polygons and RLE segmentations are not read.

Both sides raise :class:`LayoutError` naming the file and the entry at fault; the server turns it into a 422
at registration, so a bad annotation never surfaces in the middle of an epoch. What needs the pixels (a box
outside its image, a mask of another size) is checked where the images are read: on the server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError

from .targets import ImageTargets

IMAGES, MASKS = "images", "masks"
COCO_PATTERN = "instances_*.json"


class LayoutError(ValueError):
    """A dataset folder or annotation file that cannot be read as its layout says: ``file`` and ``field`` name
    what is at fault (``field`` is a path inside the file, such as ``annotations[3].bbox``)."""

    def __init__(self, message: str, file: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.file, self.field = file, field


@dataclass(frozen=True)
class CocoImage:
    """One image of a COCO file: where it is, the size the file says it has, and its boxes (coco format)."""

    file_name: str
    height: int
    width: int
    targets: ImageTargets
    sources: list[str]  # per box, the annotation it came from: ``instances_val.json: annotations[17] (id 904)``


def segmentation_pairs(images: list[str], masks: list[str]) -> list[tuple[str, str]]:
    """(image, mask) names matched by stem, sorted by image name. ``images`` and ``masks`` are file names
    inside ``images/`` and ``masks/``."""
    by_stem = {}
    for side, names in ((IMAGES, images), (MASKS, masks)):
        stems: dict[str, str] = {}
        for name in sorted(names):
            stem = PurePosixPath(name).stem
            if stem in stems:
                message = f"{side}/{stems[stem]} and {side}/{name} share the stem {stem!r}: which one pairs is unclear"
                raise LayoutError(message, file=f"{side}/{name}")
            stems[stem] = name
        by_stem[side] = stems
    for side, other in ((IMAGES, MASKS), (MASKS, IMAGES)):
        alone = sorted(set(by_stem[side]) - set(by_stem[other]))
        if alone:
            name = f"{side}/{by_stem[side][alone[0]]}"
            more = f" (and {len(alone) - 1} more)" if len(alone) > 1 else ""
            raise LayoutError(f"{name} has no {other[:-1]} of the same stem in {other}/{more}", file=name)
    if not by_stem[IMAGES]:
        raise LayoutError(f"no images in {IMAGES}/ (segmentation layout: {IMAGES}/<stem>.<ext>, {MASKS}/<stem>.<ext>)")
    return sorted((image, by_stem[MASKS][stem]) for stem, image in by_stem[IMAGES].items())


def coco_file(names: list[str]) -> str:
    """The one ``instances_*.json`` among a folder's ``names``."""
    found = sorted(name for name in names if PurePosixPath(name).match(COCO_PATTERN))
    if len(found) != 1:
        listed = ", ".join(found) if found else "none"
        raise LayoutError(f"a coco folder holds one {COCO_PATTERN} beside its images, found {listed}: name it")
    return found[0]


def coco_images(document: Any, source: str) -> tuple[list[CocoImage], dict[str, str]]:
    """The images of a parsed COCO detection file, with their boxes, and its categories (id -> name)."""
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise LayoutError(f"{source} is not a COCO detection file (no 'images' list)", file=source)
    categories = _categories(document.get("categories", []), source)
    images: dict[int, tuple[str, int, int]] = {}
    for index, entry in enumerate(document["images"]):
        where = f"images[{index}]"
        image_id = _field(entry, "id", int, source, where)
        if image_id in images:
            raise LayoutError(f"{source}: {where} repeats image id {image_id}", file=source, field=f"{where}.id")
        size = (_field(entry, "height", int, source, where), _field(entry, "width", int, source, where))
        images[image_id] = (_field(entry, "file_name", str, source, where), *size)
    found: dict[int, list[tuple[list[float], int, str]]] = {image_id: [] for image_id in images}
    for index, entry in enumerate(document.get("annotations", [])):
        image_id, box, category = _annotation(entry, index, images, categories, source)
        found[image_id].append((box, category, f"{source}: annotations[{index}] (id {entry.get('id')})"))
    listed = sorted(images.items(), key=lambda item: item[1][0])
    coco = [_coco_image(name, height, width, found[image_id], source) for image_id, (name, height, width) in listed]
    return coco, {str(key): value for key, value in categories.items()}


def _coco_image(
    name: str, height: int, width: int, found: list[tuple[list[float], int, str]], source: str
) -> CocoImage:
    try:
        targets = ImageTargets(boxes=[box for box, _, _ in found], labels=[label for _, label, _ in found])
    except ValidationError as error:
        raise LayoutError(f"{source}: the boxes of {name}: {error.errors()[0]['msg']}", file=source) from None
    return CocoImage(name, height, width, targets, [where for _, _, where in found])


def _categories(entries: Any, source: str) -> dict[int, str]:
    if not isinstance(entries, list):
        raise LayoutError(f"{source}: 'categories' must be a list", file=source, field="categories")
    return {
        _field(entry, "id", int, source, f"categories[{index}]"): str(entry.get("name", ""))
        for index, entry in enumerate(entries)
    }


def _annotation(
    entry: Any, index: int, images: dict[int, Any], categories: dict[int, str], source: str
) -> tuple[int, list[float], int]:
    where = f"annotations[{index}]"
    image_id = _field(entry, "image_id", int, source, where)
    if image_id not in images:
        message = f"{source}: {where} (id {entry.get('id')}) refers to image id {image_id}, which 'images' lacks"
        raise LayoutError(message, file=source, field=f"{where}.image_id")
    category = _field(entry, "category_id", int, source, where)
    if categories and category not in categories:
        message = f"{source}: {where} (id {entry.get('id')}) has category_id {category}, which 'categories' lacks"
        raise LayoutError(message, file=source, field=f"{where}.category_id")
    box = entry.get("bbox")
    numbers = isinstance(box, list) and len(box) == 4 and all(_finite(value) for value in box)
    if not numbers or box[2] <= 0 or box[3] <= 0:
        message = (
            f"{source}: {where} (id {entry.get('id')}) has bbox {box!r}; COCO's is [x, y, width, height], w, h > 0"
        )
        raise LayoutError(message, file=source, field=f"{where}.bbox")
    return image_id, [float(value) for value in box], category


def _field(entry: Any, key: str, kind: type, source: str, where: str) -> Any:
    value = entry.get(key) if isinstance(entry, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        message = f"{source}: {where}.{key} must be {'an integer' if kind is int else 'a string'}, got {value!r}"
        raise LayoutError(message, file=source, field=f"{where}.{key}")
    return value


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
