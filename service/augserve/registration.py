"""Registering datasets: storing uploaded blobs, and building a manifest from blobs or a server-side folder.

Every file is read at registration (a blob is decoded in full when it is uploaded, a manifest's files have
their headers read), so a broken file fails here, naming itself, instead of in the middle of an epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from augserve_client.protocol.datasets import CreateDataset
from augserve_client.protocol.errors import ErrorCode
from augserve_client.protocol.targets import ImageTargets, Label, TargetRules, as_fractions, from_fractions

from . import codecs
from .errors import ServiceError, limit_exceeded
from .listings import Listing, folder_listing, upload_listing
from .preflight import check_mask, check_targets
from .state import AppState
from .store import Manifest, decoded_key, now


def store_blob(state: AppState, name: str, data: bytes) -> dict[str, Any]:
    """Decode ``data`` in full, store it by content hash, and put the decoded image straight into the cache."""
    image = codecs.decode(data, name, state.settings.max_pixels)
    digest = state.store.put_blob(data)
    state.cache.get(decoded_key("upload", digest), lambda: image)
    return {"file": name, "sha256": digest, "bytes": len(data), "height": image.shape[0], "width": image.shape[1]}


def register(state: AppState, body: CreateDataset, owner: str) -> tuple[Manifest, bool]:
    """Build and store the manifest ``body`` asks for, owned by ``owner``: (the stored one, whether it is new)."""
    return state.store.create(build_manifest(state, body, owner))


def build_manifest(state: AppState, body: CreateDataset, owner: str) -> Manifest:
    store = state.store
    max_annotation = state.settings.max_annotation_bytes
    listing = folder_listing(store, body, max_annotation) if body.folder is not None else upload_listing(body)
    if body.items is not None:
        missing = store.missing([*listing.keys, *(listing.masks or [])])
        if missing:
            raise ServiceError(  # a reference to something the server does not have: 404, as for a dataset
                ErrorCode.NOT_FOUND,
                f"blob {missing[0]} was never uploaded, or was reclaimed since (POST /v1/blobs first)",
                field=_blob_field(listing, missing[0]),
            )
    if len(listing.keys) > state.settings.max_dataset_items:
        limit = state.settings.max_dataset_items
        message = f"the dataset has {len(listing.keys)} items"
        raise limit_exceeded(ErrorCode.TOO_MANY_IMAGES, "max_dataset_items", limit, message, field="items")
    kind = "upload" if body.folder is None else "folder"
    sizes, total = [], 0
    for index, key in enumerate(listing.keys):
        data = store.read_key(kind, key)
        sizes.append(codecs.image_size(data, listing.names[index], state.settings.max_pixels))
        total += len(data)
    return Manifest(
        name=body.name,
        kind=kind,
        keys=listing.keys,
        labels=listing.labels,
        sizes=sizes,
        bytes=total + _check_masks(state, kind, listing, sizes),
        classes=listing.classes,
        folder=body.folder,
        created=now(),
        owner=owner,
        layout=body.layout if body.folder is not None else None,
        **stored_targets(listing, sizes),
    )


def _blob_field(listing: Listing, digest: str) -> str:
    if digest in listing.keys:
        return f"items[{listing.keys.index(digest)}].blob"
    assert listing.masks is not None
    return f"items[{listing.masks.index(digest)}].mask"


def _check_masks(state: AppState, kind: str, listing: Listing, sizes: list[tuple[int, int]]) -> int:
    """Decode every mask (its mode and values are only known then) and check it has its image's size; returns
    the masks' bytes. Nothing is kept: epochs decode masks through the cache like images."""
    total = 0
    for index, key in enumerate(listing.masks or []):
        data = state.store.read_key(kind, key)
        field = f"{listing.fields[index]}.mask" if listing.fields and kind == "upload" else "masks"
        shown = key if kind == "folder" else f"the mask of items[{index}]"
        mask = codecs.decode_mask(data, shown, state.settings.max_pixels)
        check_mask(mask.shape, *sizes[index], field, shown, listing.names[index])
        total += len(data)
    return total


def stored_targets(listing: Listing, sizes: list[tuple[int, int]]) -> dict[str, Any]:
    """The manifest's ``masks``, ``targets`` and ``categories``: every box checked against its image and stored
    clipped to it, in pascal_voc pixels; every keypoint checked to lie on it; labels as integers."""
    if listing.targets is None:
        return {"masks": listing.masks}
    numbering, names = _numbering(listing)
    rules = TargetRules(box_format=listing.box_format, clip=True)
    stored = []
    for index, targets in enumerate(listing.targets):
        targets = targets or ImageTargets()
        height, width = sizes[index]
        sources = listing.box_sources[index] if listing.box_sources else None
        field = listing.fields[index] + ("" if sources else ".targets") if listing.fields else "targets"
        box_field = (lambda j, sources=sources: sources[j]) if sources else None
        check_targets(targets, rules, height, width, field, listing.names[index], box_field)
        boxes = as_fractions(np.array(targets.boxes, dtype=np.float64).reshape(-1, 4), rules.box_format, height, width)
        pixels = from_fractions(boxes.clip(0.0, 1.0), "pascal_voc", height, width)
        stored.append(
            {
                "boxes": pixels.tolist(),
                "labels": [numbering(label) for label in targets.labels],
                "keypoints": [list(point) for point in targets.keypoints],
                "keypoint_labels": None
                if targets.keypoint_labels is None
                else [numbering(label) for label in targets.keypoint_labels],
            }
        )
    categories = listing.categories or {str(index): name for index, name in enumerate(names)} or None
    return {"masks": listing.masks, "targets": stored, "categories": categories}


def _all_labels(listing: Listing) -> list[Label]:
    return [
        label
        for targets in listing.targets or []
        if targets is not None
        for label in [*targets.labels, *(targets.keypoint_labels or [])]
    ]


def _numbering(listing: Listing) -> tuple[Callable[[Label], int], list[str]]:
    """Labels as integers: integers stay; strings become indices into their sorted set (returned: the names of
    those indices). Both in one dataset would be ambiguous (is 0 an id or the first name?), so that is refused."""
    labels = _all_labels(listing)
    names = sorted({label for label in labels if isinstance(label, str)})
    if names and any(isinstance(label, int) for label in labels):
        message = "box and keypoint labels are either all integers or all names; this dataset mixes them"
        raise ServiceError(ErrorCode.INVALID_TARGETS, message, field="items")
    index = {name: position for position, name in enumerate(names)}
    return (lambda label: index[label] if isinstance(label, str) else int(label)), names
