"""Datasets: upload blobs, register (uploaded or server-side folder), list, describe, delete, stream epochs."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from augserve_client.datasets import CreateDataset, HashList
from augserve_client.epochs import EpochRequest
from augserve_client.errors import ErrorCode
from augserve_client.wire import MEDIA_TYPE_FRAMES
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from .. import batching, codecs
from ..errors import ServiceError
from ..forms import read_files, read_form
from ..state import AppState, State
from ..store import Manifest, now

router = APIRouter(tags=["datasets"])


@router.post("/v1/blobs/missing")
async def missing_blobs(body: HashList, state: State) -> dict[str, list[str]]:
    """Which of these SHA-256 hashes the server lacks: upload only those."""
    return {"missing": await state.run(state.store.missing, body.hashes)}


@router.post(
    "/v1/blobs",
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    }
                }
            }
        }
    },
)
async def upload_blobs(request: Request, state: State) -> dict[str, list[dict[str, Any]]]:
    """Store image files by content hash. Each is decoded in full first, so a broken file fails here, naming
    itself, instead of in the middle of an epoch; the decoded image goes straight into the cache."""
    settings = state.settings
    form = await read_form(request, settings, settings.max_upload_files, field="files", limit="max_upload_files")
    files = await read_files(form, "files", settings, settings.max_upload_files, "max_upload_files")
    return {"blobs": list(await asyncio.gather(*(state.run(_store_blob, state, n, d) for n, d in files)))}


def _store_blob(state: AppState, name: str, data: bytes) -> dict[str, Any]:
    image = codecs.decode(data, name, state.settings.max_pixels)
    digest = state.store.put_blob(data)
    state.cache.get(f"upload:{digest}", lambda: image)
    return {"file": name, "sha256": digest, "bytes": len(data), "height": image.shape[0], "width": image.shape[1]}


@router.post("/v1/datasets", status_code=201)
async def create_dataset(body: CreateDataset, state: State, response: Response) -> dict[str, Any]:
    """Register a dataset: 201 when new, 200 when the same name already holds the same content, 409 otherwise."""
    manifest = await state.run(_build_manifest, state, body)
    stored, created = state.store.create(manifest)
    response.status_code = 201 if created else 200
    return stored.summary()


def _build_manifest(state: AppState, body: CreateDataset) -> Manifest:
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
            raise ServiceError(
                ErrorCode.INVALID_REQUEST,
                f"blob {missing[0]} was never uploaded (POST /v1/blobs first)",
                field=f"items[{keys.index(missing[0])}].blob",
            )
        paths = [store.blob_path(key) for key in keys]
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
    )


def _labels(raw: list[int | str | None]) -> tuple[list[int], list[str] | None]:
    """Integer labels stay; string labels become indices into their sorted set (returned as classes); none -> -1."""
    if any(isinstance(label, str) for label in raw):
        classes = sorted({str(label) for label in raw if label is not None})
        return [classes.index(str(label)) if label is not None else -1 for label in raw], classes
    return [-1 if label is None else int(label) for label in raw], None


@router.get("/v1/datasets")
async def list_datasets(state: State) -> dict[str, list[dict[str, Any]]]:
    return {"datasets": [manifest.summary() for manifest in await state.run(state.store.list)]}


@router.get("/v1/datasets/{name}")
async def describe_dataset(name: str, state: State) -> dict[str, Any]:
    """Count, classes and bytes of the dataset, and this process's decoded-image cache statistics."""
    manifest = await state.run(state.store.get, name)
    return {**manifest.summary(), "cache": state.cache.stats()}


@router.delete("/v1/datasets/{name}", status_code=204)
async def delete_dataset(name: str, state: State) -> Response:
    await state.run(state.store.delete, name)
    return Response(status_code=204)


@router.post(
    "/v1/datasets/{name}/epochs",
    response_class=StreamingResponse,
    responses={200: {"content": {MEDIA_TYPE_FRAMES: {}}, "description": "batch frames (docs/wire-format.md)"}},
)
async def stream_epoch(name: str, body: EpochRequest, state: State) -> StreamingResponse:
    """Stream one shard of one epoch, batch by batch, from ``start_batch``; headers say its length, how many
    batches the shard has (``X-Augserve-Batches``) and the cache's hits and misses when the stream started."""
    manifest = await state.run(state.store.get, name)
    plan = batching.plan(state, manifest, body)
    stream = state.stream(
        batching.jobs(state, manifest, body, plan),
        trailer=lambda: batching.end_frame(len(plan.batches)),
        on_error=partial(batching.error_frame, room=plan.error_room()),
    )
    cache = state.cache.stats()
    headers = {
        "Content-Length": str(plan.content_length()),
        "X-Augserve-Batches": str(plan.total),
        "X-Augserve-Shape": f"{plan.shape[0]}x{plan.shape[1]}x3",
        "X-Augserve-Cache": f"hits={cache['hits']};misses={cache['misses']}",
    }
    return StreamingResponse(stream, media_type=MEDIA_TYPE_FRAMES, headers=headers)
