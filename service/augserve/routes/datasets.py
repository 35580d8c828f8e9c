"""Datasets: upload blobs, register (uploaded or server-side folder), list, describe, delete, stream epochs."""

from __future__ import annotations

from functools import partial
from typing import Any

from augserve_client.protocol.datasets import CreateDataset, HashList
from augserve_client.protocol.epochs import EpochRequest
from augserve_client.protocol.wire import MEDIA_TYPE_FRAMES
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from .. import epoch_stream, registration
from ..reclaim import reclaim_blobs
from .deps import Reader, State, Writer
from .forms import read_files, read_form
from .responses import CutOnFailureResponse

router = APIRouter(tags=["datasets"])


@router.post("/v1/blobs/missing")
async def missing_blobs(body: HashList, state: State, _: Writer) -> dict[str, list[str]]:
    """Which of these SHA-256 hashes the server lacks: upload only those."""
    return {"missing": await state.io(state.store.missing, body.hashes)}


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
async def upload_blobs(request: Request, state: State, _: Writer) -> dict[str, list[dict[str, Any]]]:
    """Store image files by content hash. Each is decoded in full first, so a broken file fails here, naming
    itself, instead of in the middle of an epoch; the decoded image goes straight into the cache."""
    settings = state.settings
    form = await read_form(request, settings.max_upload_files, field="files", limit="max_upload_files")
    files = await read_files(form, "files", settings, settings.max_upload_files, "max_upload_files")
    calls = [partial(registration.store_blob, state, *file) for file in files]
    return {"blobs": await state.compute_all(object(), calls, request.is_disconnected)}


@router.post("/v1/datasets", status_code=201)
async def create_dataset(body: CreateDataset, state: State, who: Writer, response: Response) -> dict[str, Any]:
    """Register a dataset: 201 when new, 200 when the same name already holds the same content, 409 otherwise."""
    stored, created = await state.compute(object(), registration.register, state, body, who.name)
    response.status_code = 201 if created else 200
    return stored.summary()


@router.get("/v1/datasets")
async def list_datasets(state: State, _: Reader) -> dict[str, list[dict[str, Any]]]:
    return {"datasets": [manifest.summary() for manifest in await state.io(state.store.list)]}


@router.get("/v1/datasets/{name}")
async def describe_dataset(name: str, state: State, _: Reader) -> dict[str, Any]:
    """Count, classes and bytes of the dataset, and this process's decoded-image cache statistics."""
    manifest = await state.io(state.store.get, name)
    return {**manifest.summary(), "cache": state.cache.stats()}


@router.delete("/v1/datasets/{name}", status_code=204)
async def delete_dataset(name: str, state: State, who: Writer) -> Response:
    """Delete a dataset: its owner (the key that registered it) or an admin key. Blobs no dataset lists any
    more are reclaimed (those untouched for ``blob_grace_seconds``)."""
    await state.io(state.store.delete, name, who)
    await state.io(reclaim_blobs, state.store, state.settings.blob_grace_seconds)
    return Response(status_code=204)


@router.post(
    "/v1/datasets/{name}/epochs",
    response_class=StreamingResponse,
    responses={200: {"content": {MEDIA_TYPE_FRAMES: {}}, "description": "batch frames (docs/wire-format.md)"}},
)
async def stream_epoch(name: str, body: EpochRequest, state: State, who: Reader) -> StreamingResponse:
    """Stream one shard of one epoch, batch by batch, from ``start_batch``; headers say its length (when raw), how
    many batches the shard has (``X-Augserve-Batches``) and the cache's hits and misses when the stream started."""
    manifest = await state.io(state.store.get, name)
    owner = object()  # this stream's turn in the pool, for its plan and its batches
    stream = await state.compute(owner, epoch_stream.open_epoch, state, owner, manifest, body)
    plan, cache = stream.plan, stream.cache
    length = plan.content_length()  # None: an encoded stream, sent in chunks
    headers = {
        **({"Content-Length": str(length)} if length is not None else {}),
        "X-Augserve-Batches": str(plan.total),
        "X-Augserve-Shape": f"{plan.shape[0]}x{plan.shape[1]}x3",
        "X-Augserve-Cache": f"hits={cache['hits']};misses={cache['misses']}",
    }
    return CutOnFailureResponse(state.quota.hold(who, stream.body), media_type=MEDIA_TYPE_FRAMES, headers=headers)
