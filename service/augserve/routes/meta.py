"""Health, readiness, and the spec's self-description: what ops exist and what a spec normalises to."""

from __future__ import annotations

import json
from typing import Any

from augserve_client.spec import OPS, Output, Spec
from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from ..forms import parse_spec

router = APIRouter()

EXAMPLE_SPEC: dict[str, Any] = {
    "version": 1,
    "ops": [
        {"op": "reflect", "horizontal": True, "p": 0.5},
        {"op": "rotate", "angle": [-15, 15], "p": 0.5},
        {"op": "crop", "mode": "random_resized", "size": [224, 224], "scale": [0.5, 1.0]},
        {"op": "shift", "x": [-0.1, 0.1], "y": [-0.1, 0.1], "p": 0.5},
    ],
    "output": {"format": "png"},
}


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"])
async def readyz(request: Request) -> JSONResponse:
    """Readiness: 503 until start-up has built the pool and the store, so a balancer sends no work early."""
    state = getattr(request.app.state, "augserve", None)
    if state is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    return JSONResponse({"status": "ready", "threads": state.settings.pool_threads})


@router.get("/v1/ops", tags=["spec"])
async def list_ops() -> dict[str, Any]:
    """Every op with its JSON schema, plus the output section's, so any language can build specs."""
    return {
        "version": Spec.model_fields["version"].default,
        "ops": {name: model.model_json_schema() for name, model in OPS.items()},
        "output": Output.model_json_schema(),
        "example": EXAMPLE_SPEC,
    }


@router.post("/v1/specs/validate", tags=["spec"])
async def validate_spec(spec: Any = Body(..., examples=[EXAMPLE_SPEC])) -> dict[str, Any]:  # noqa: B008
    """Validate a spec and return its normalised form (every default filled in); 422 names the bad field."""
    return parse_spec(json.dumps(spec)).model_dump(mode="json")
