"""Registering datasets: storing uploaded blobs, and building a manifest from blobs or a server-side folder.

Every file is read at registration (a blob is decoded in full when it is uploaded, a manifest's files have
their headers read), so a broken file fails here, naming itself, instead of in the middle of an epoch.
"""

from __future__ import annotations

from typing import Any

from augserve_client.protocol.datasets import CreateDataset
from augserve_client.protocol.errors import ErrorCode

from . import codecs
from .errors import ServiceError, limit_exceeded
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
    store, max_pixels = state.store, state.settings.max_pixels
    if body.folder is not None:
        keys, labels, classes = store.folder_files(body.folder)
        paths = [store.root / key for key in keys]
    else:
        assert body.items is not None
        keys = [item.blob for item in body.items]
        labels, classes = _labels([item.label for item in body.items])
        missing = store.missing(keys)
        if missing:
            raise ServiceError(  # a reference to something the server does not have: 404, as for a dataset
                ErrorCode.NOT_FOUND,
                f"blob {missing[0]} was never uploaded, or was reclaimed since (POST /v1/blobs first)",
                field=f"items[{keys.index(missing[0])}].blob",
            )
        paths = [store.blob_path(key) for key in keys]
    if len(keys) > state.settings.max_dataset_items:
        limit = state.settings.max_dataset_items
        message = f"the dataset has {len(keys)} items"
        raise limit_exceeded(ErrorCode.TOO_MANY_IMAGES, "max_dataset_items", limit, message, field="items")
    sizes, total = [], 0
    for key, path in zip(keys, paths, strict=True):
        data = path.read_bytes()
        sizes.append(codecs.image_size(data, key, max_pixels))
        total += len(data)
    return Manifest(
        name=body.name,
        kind="upload" if body.folder is None else "folder",
        keys=keys,
        labels=labels,
        sizes=sizes,
        bytes=total,
        classes=classes,
        folder=body.folder,
        created=now(),
        owner=owner,
    )


def _labels(raw: list[int | str | None]) -> tuple[list[int], list[str] | None]:
    """Integer labels stay; string labels become indices into their sorted set (returned as classes); none -> -1."""
    if any(isinstance(label, str) for label in raw):
        classes = sorted({str(label) for label in raw if label is not None})
        return [classes.index(str(label)) if label is not None else -1 for label in raw], classes
    return [-1 if label is None else int(label) for label in raw], None
