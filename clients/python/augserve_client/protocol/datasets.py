"""Dataset registration requests, as both sides read them: names, items, folders, blob hashes.

A dataset is registered in two steps so that nothing is sent twice: the client hashes its files (SHA-256),
asks the server which hashes it lacks (``POST /v1/blobs/missing`` with a :class:`HashList`), uploads only
those (``POST /v1/blobs``), then names the dataset by listing hashes and labels (``POST /v1/datasets`` with a
:class:`CreateDataset`). A folder that already lives on the server is registered by its path instead.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .targets import BoxFormat, ImageTargets

Label = int | str | None
Layout = Literal["imagefolder", "segmentation", "coco"]
LAYOUTS: dict[str, str] = {
    "imagefolder": "folder/<class>/<image>: one label per image, its class",
    "segmentation": "folder/images/<stem>.<ext> and folder/masks/<stem>.<ext>: a mask per image, matched by stem",
    "coco": "images under folder and one instances_*.json (COCO detection) beside them: boxes and category ids",
}
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# What counts as an image in an ImageFolder, on the client's disk and under the server's data root alike.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".npy"})


def dataset_path(name: str, hint: str = "") -> str:
    """``/v1/datasets/{name}``, once ``name`` is known to be a dataset name: a name with a ``/`` or a space
    would reach another route, or none, and come back as a puzzling error instead of this one."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise ValueError(f"{name!r} is not a dataset name (letters, digits, '.', '_', '-'; 64 at most){hint}")
    return f"/v1/datasets/{name}"


def is_image_name(name: str) -> bool:
    """A file of a class folder that is an image: a known suffix, and not hidden (macOS writes ``._photo.jpg``
    resource forks beside photos on shared drives; they are not images)."""
    return not name.startswith(".") and PurePath(name).suffix.lower() in IMAGE_SUFFIXES


def is_class_name(name: str) -> bool:
    """A folder of an ImageFolder that is a class: any but hidden ones (Jupyter's ``.ipynb_checkpoints``)."""
    return not name.startswith(".")


class DatasetItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    blob: str = Field(description="SHA-256 of an uploaded file")
    label: Label = None
    mask: str | None = Field(None, description="SHA-256 of the image's uploaded mask (same height and width)")
    targets: ImageTargets | None = Field(None, description="boxes (in box_format), labels, keypoints")


class CreateDataset(BaseModel):
    """``POST /v1/datasets``: uploaded blobs with labels, or a folder under the server's data root."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="letters, digits, '.', '_' and '-'; at most 64 characters")
    items: list[DatasetItem] | None = Field(None, min_length=1)
    folder: str | None = Field(None, description="a folder relative to the server's data_root, in `layout`")
    layout: Layout = Field(
        "imagefolder", description="how `folder` is laid out: " + "; ".join(f"{k}: {v}" for k, v in LAYOUTS.items())
    )
    annotations: str | None = Field(
        None, description="coco: the annotation file's name inside the folder (default: its one instances_*.json)"
    )
    box_format: BoxFormat = Field("pascal_voc", description="the format of the items' boxes")
    categories: dict[str, str] | None = Field(
        None, description="names of the items' integer box and keypoint labels (a COCO set's categories)"
    )

    @field_validator("folder")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and any(ord(character) < 32 or character == "\x7f" for character in value):
            raise ValueError("folder must not contain control characters (a NUL byte ends a path early)")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> CreateDataset:
        if (self.items is None) == (self.folder is None):
            raise ValueError("give either items (uploaded blobs) or folder (on the server), not both")
        if self.folder is None and self.layout != "imagefolder":
            raise ValueError("layout describes a folder on the server; uploaded items carry their masks and targets")
        if self.annotations is not None and self.layout != "coco":
            raise ValueError("annotations names a COCO file: give it with layout 'coco'")
        with_mask = [item.mask is not None for item in self.items or []]
        if any(with_mask) and not all(with_mask):
            without, first = with_mask.index(False), with_mask.index(True)
            raise ValueError(f"items[{without}] has no mask while items[{first}] has one: give every item a mask")
        return self


class HashList(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hashes: list[str] = Field(max_length=100_000)
