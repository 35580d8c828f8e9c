"""Datasets: upload blobs, register (uploaded or server-side folder), list, describe, delete, stream epochs."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from augserve_client.protocol.datasets import NAME_PATTERN, CreateDataset, HashList
from augserve_client.protocol.epochs import EpochRequest, ReplayRequest
from augserve_client.protocol.wire import MEDIA_TYPE_FRAMES, MEDIA_TYPE_TAR
from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import StreamingResponse

from .. import epoch_stream, registration, replay
from ..reclaim import reclaim_blobs
from .deps import Reader, State, Writer
from .forms import read_files, read_form
from .responses import CutOnFailureResponse, ErrorBody, errors

router = APIRouter(tags=["datasets"])
DatasetName = Annotated[str, Path(pattern=NAME_PATTERN, description="a registered dataset's name")]
SHA256 = "^[0-9a-f]{64}$"


def body_rules(model: type, rules: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` declaring what the server checks beyond ``model``'s own schema (it is the contract's,
    shared with the client): the body must match both, so the schema says everything a request must be."""
    schema = {"allOf": [{"$ref": f"#/components/schemas/{model.__name__}"}, rules]}
    return {"requestBody": {"content": {"application/json": {"schema": schema}}}}


# items xor folder, and each item's blob and mask a SHA-256; a folder holds no control characters; a layout
# other than imagefolder describes a folder, and annotations name a coco folder's file.
ONE_SOURCE = {
    "oneOf": [
        {"required": ["items"], "properties": {"items": {"type": "array"}}},
        {"required": ["folder"], "properties": {"folder": {"type": "string"}}},
    ],
    "allOf": [
        {
            "anyOf": [
                {"not": {"required": ["layout"]}},
                {"properties": {"layout": {"const": "imagefolder"}}},
                {"required": ["folder"]},
            ]
        },
        {
            "anyOf": [
                {"not": {"required": ["annotations"]}},
                {"properties": {"annotations": {"type": "null"}}},
                {"required": ["layout"], "properties": {"layout": {"const": "coco"}}},
            ]
        },
    ],
    "properties": {
        "items": {"items": {"properties": {"blob": {"pattern": SHA256}, "mask": {"pattern": SHA256}}}},
        "folder": {"pattern": "^[^\\x00-\\x1f\\x7f]*$"},
    },
}
# quality only with encoding jpeg (shard_index < shard_count and end_batch >= start_batch compare two fields,
# which JSON Schema cannot: the fields' descriptions say so).
JPEG_QUALITY = {
    "anyOf": [
        {"properties": {"quality": {"type": "null"}}},
        {"required": ["encoding"], "properties": {"encoding": {"const": "jpeg"}}},
    ]
}


@router.post(
    "/v1/blobs/missing",
    openapi_extra=body_rules(HashList, {"properties": {"hashes": {"items": {"pattern": SHA256}}}}),
    responses=errors(413),
)
async def missing_blobs(body: HashList, state: State, _: Writer) -> dict[str, list[str]]:
    """Which of these SHA-256 hashes the server lacks: upload only those."""
    return {"missing": await state.io(state.store.missing, body.hashes)}


@router.post(
    "/v1/blobs",
    responses=errors(413, 415, 507),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["files"],
                        "properties": {
                            "files": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}}
                        },
                    }
                }
            },
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


@router.post(
    "/v1/datasets",
    status_code=201,
    openapi_extra=body_rules(CreateDataset, ONE_SOURCE),
    responses={200: {"description": "the same name already holds the same content"}, **errors(404, 409, 413, 415, 507)},
)
async def create_dataset(body: CreateDataset, state: State, who: Writer, response: Response) -> dict[str, Any]:
    """Register a dataset: 201 when new, 200 when the same name already holds the same content, 409 otherwise."""
    stored, created = await state.compute(object(), registration.register, state, body, who.name)
    response.status_code = 201 if created else 200
    return stored.summary()


@router.get("/v1/datasets")
async def list_datasets(state: State, _: Reader) -> dict[str, list[dict[str, Any]]]:
    return {"datasets": [manifest.summary() for manifest in await state.io(state.store.list)]}


@router.get("/v1/datasets/{name}", responses=errors(404))
async def describe_dataset(name: DatasetName, state: State, _: Reader) -> dict[str, Any]:
    """Count, classes and bytes of the dataset, and this process's decoded-image cache statistics."""
    manifest = await state.io(state.store.get, name)
    return {**manifest.summary(), "cache": state.cache.stats()}


@router.delete("/v1/datasets/{name}", status_code=204, responses=errors(404))
async def delete_dataset(name: DatasetName, state: State, who: Writer) -> Response:
    """Delete a dataset: its owner (the key that registered it) or an admin key. Blobs no dataset lists any
    more are reclaimed (those untouched for ``blob_grace_seconds``)."""
    await state.io(state.store.delete, name, who)
    await state.io(reclaim_blobs, state.store, state.settings.blob_grace_seconds)
    return Response(status_code=204)


@router.post(
    "/v1/datasets/{name}/epochs",
    response_class=StreamingResponse,
    openapi_extra=body_rules(EpochRequest, JPEG_QUALITY),
    responses={
        200: {"content": {MEDIA_TYPE_FRAMES: {}}, "description": "batch frames (docs/wire-format.md)"},
        **errors(404, 409, 413, 415, 429),
    },
)
async def stream_epoch(name: DatasetName, body: EpochRequest, state: State, who: Reader) -> StreamingResponse:
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


@router.post(
    "/v1/datasets/{name}/replay",
    response_class=Response,
    responses={
        200: {"content": {MEDIA_TYPE_TAR: {}}, "description": "a tar of {index:05d}.{ext} and {index:05d}.json"},
        **errors(404, 413),
        409: {"model": ErrorBody, "description": "index is past the dataset's last sample"},
    },
)
async def replay_sample(name: DatasetName, body: ReplayRequest, state: State, _: Reader) -> Response:
    """One sample's variant, exactly as the epoch stream with this spec, seed and epoch made it (byte for byte),
    with the parameters it drew: for the one batch that looks wrong, without streaming the epoch again."""
    manifest = await state.io(state.store.get, name)
    parts = await state.compute(object(), replay.replay, state, manifest, body)
    return Response(b"".join(parts), media_type=MEDIA_TYPE_TAR)
