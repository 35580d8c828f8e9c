"""``POST /v1/augment``: uploaded images + a spec in, a tar stream of randomized variants out."""

from __future__ import annotations

import copy
from typing import Any

from augserve_client.protocol.spec import EXAMPLE_SPEC
from augserve_client.protocol.wire import MEDIA_TYPE_TAR
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from .. import variants
from ..settings import Settings
from .deps import Reader, State
from .forms import read_augment_form
from .responses import CutOnFailureResponse

router = APIRouter(tags=["augment"])

_MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["images"],
    "properties": {
        "images": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "format": "binary"},
            "description": "one or more images (JPEG, PNG, WebP, BMP, TIFF, GIF, or .npy uint8)",
        },
        "spec": {
            "$ref": "#/components/schemas/Spec",
            "description": "the augmentation spec, as JSON",
            "example": EXAMPLE_SPEC,
        },
        "variants": {"type": "integer", "minimum": 1, "default": 1, "description": "variants per image"},
        # format int64 bounds it at SEED_MAX exactly; FastAPI writes a maximum as a float, 9223372036854776000
        "seed": {
            "type": "integer",
            "format": "int64",
            "minimum": 0,
            "description": "omit for a fresh one (returned in X-Augserve-Seed)",
        },
        "masks": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "optional: one segmentation mask per image, in the same order (greyscale or palette "
            "PNG of class ids, or .npy uint8 HxW), each the size of its image",
        },
        "targets": {
            "type": "string",
            "description": "optional: a JSON list with, per image (or null), its boxes in spec.targets.box_format, "
            "one label per box, and keypoints [x, y] with optional keypoint_labels, e.g. "
            '[{"boxes": [[10, 20, 110, 90]], "labels": [3], "keypoints": [[40, 50]]}]',
        },
    },
}


@router.post(
    "/v1/augment",
    response_class=StreamingResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": _MULTIPART_SCHEMA,
                    "encoding": {"spec": {"contentType": "application/json"}},
                }
            },
        }
    },
    responses={
        200: {
            "content": {MEDIA_TYPE_TAR: {}},
            "description": "tar stream: {image:05d}_{variant:03d}.{ext}, .mask.png (or .mask.npy) when masks were "
            "sent, and .json per variant (with the boxes and keypoints that survived)",
        }
    },
)
async def augment(request: Request, state: State, who: Reader) -> StreamingResponse:
    """Stream ``variants`` randomized versions of every uploaded image, as a WebDataset-style tar.

    The seed is ``seed`` or a fresh one; it is returned in ``X-Augserve-Seed`` and in every variant's
    metadata, and variant (i, v) uses ``derive_seed(seed, i, v)``, so any call or variant can be replayed.
    """
    stream = await variants.augment(state, await read_augment_form(request, state.settings), request.is_disconnected)
    headers = {"X-Augserve-Seed": str(stream.seed), "X-Augserve-Count": str(stream.count)}
    return CutOnFailureResponse(state.quota.hold(who, stream.body), media_type=MEDIA_TYPE_TAR, headers=headers)


def declare_limits(schema: dict[str, Any], settings: Settings) -> None:
    """Put this server's limits on images and variants into its OpenAPI ``schema`` (they are settings, so the
    route's static declaration cannot hold them)."""
    content = schema["paths"]["/v1/augment"]["post"]["requestBody"]["content"]["multipart/form-data"]
    body = content["schema"] = copy.deepcopy(content["schema"])  # the module's dict is shared by every app
    body["properties"]["images"]["maxItems"] = settings.max_images
    body["properties"]["variants"]["maximum"] = settings.max_variants
