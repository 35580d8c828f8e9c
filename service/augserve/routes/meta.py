"""Health, readiness, and the spec's self-description: what ops exist and what a spec normalises to."""

from __future__ import annotations

from typing import Any

from augserve_client.protocol.spec import EXAMPLE_SPEC
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .. import metrics
from ..catalogue import ops_document
from .deps import caller
from .forms import parse_spec
from .responses import errors

router = APIRouter()


@router.get("/healthz", tags=["health"])
@router.get("/livez", tags=["health"])
async def livez() -> dict[str, str]:
    """Liveness: the process answers (``/healthz`` is the same)."""
    return {"status": "ok"}


@router.get("/metrics", tags=["health"], response_class=Response, responses=errors(401, 403))
async def metrics_route(request: Request) -> Response:
    """Prometheus metrics of every worker process (behind a key when ``metrics_need_key`` is set)."""
    state = request.app.state.augserve
    if state.settings.metrics_need_key:
        caller(request, state)
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


@router.get(
    "/readyz", tags=["health"], responses={503: {"description": "starting, or draining: send work elsewhere"}}
)
async def readyz(request: Request) -> JSONResponse:
    """Readiness: 503 until start-up has built the pool and the store, and again from the moment the process
    starts draining (SIGTERM), so a balancer sends work only where it will be done."""
    state = getattr(request.app.state, "augserve", None)
    if state is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    if state.drain.started:
        return JSONResponse({"status": "draining"}, status_code=503)
    return JSONResponse({"status": "ready", "threads": state.settings.pool_threads})


@router.get("/v1/ops", tags=["spec"])
async def list_ops() -> dict[str, Any]:
    """Every op with its JSON schema, plus the output section's, so any language can build specs; and the
    albumentations transforms the ``albumentations`` op may carry, each with its parameters and bounds."""
    return ops_document()


@router.post(
    "/v1/specs/validate",
    tags=["spec"],
    responses=errors(413, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Spec"}, "example": EXAMPLE_SPEC}
            },
        }
    },
)
async def validate_spec(request: Request) -> dict[str, Any]:
    """Validate a spec and return its normalised form (every default filled in); 422 names the bad field.

    The body is parsed here, not by FastAPI, so a body that is not JSON is ``invalid_spec`` naming ``spec``
    like every other spec error (FastAPI would name a character position, or nothing for an empty body).
    """
    return parse_spec(await request.body()).model_dump(mode="json")
