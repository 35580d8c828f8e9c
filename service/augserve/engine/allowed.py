"""The allow-listed albumentations transforms an ``albumentations`` op carries: built by albumentations from
their own serialized parameters, checked with their own schemas, and listed for ``GET /v1/ops``.

Which classes are allowed, and the bounds on their numbers, is the contract's
(:mod:`augserve_client.protocol.allowlist`); this module is where albumentations takes them.
"""

from __future__ import annotations

import functools
from typing import Any

import albumentations as A
from augserve_client.protocol.allowlist import ALLOWED
from augserve_client.protocol.spec import Albumentations
from pydantic import ValidationError


def allowed_transform(op: Albumentations) -> A.BasicTransform:
    """The allow-listed transform an ``albumentations`` op names, built by albumentations from its own
    parameters (``strict``: an unknown parameter is an error, not a warning). Raises ValueError when albumentations
    refuses them; :func:`augserve.preflight.check_transforms` says so before any work."""
    kind = getattr(A, op.name)
    try:
        return kind(**op.arguments, p=op.p, strict=True)
    except TypeError as error:
        if "'strict'" not in str(error):
            raise
    # A few (MedianBlur) take no ``strict``; they refuse an unknown parameter with a TypeError all the same.
    return kind(**op.arguments, p=op.p)


def allowed_problem(op: Albumentations) -> tuple[str | None, str] | None:
    """Why albumentations refuses an ``albumentations`` op's parameters, as (the parameter, if its schema says
    which; the message), or None when it takes them."""
    try:
        allowed_transform(op)
    except (ValueError, TypeError) as error:
        cause = error.__cause__  # albumentations wraps its schema's ValidationError, which names the parameter
        if isinstance(cause, ValidationError) and cause.errors():
            first = cause.errors()[0]
            return (str(first["loc"][0]) if first["loc"] else None), first["msg"]
        return None, str(error)
    return None


@functools.cache
def allowed_catalogue() -> dict[str, dict[str, Any]]:
    """Each allow-listed transform's parameters (the JSON schema of its albumentations ``InitSchema``, less
    ``p`` and ``strict``, which are the op's) and the bounds augserve adds to them."""
    catalogue = {}
    for name, bounds in sorted(ALLOWED.items()):
        schema = getattr(A, name).InitSchema.model_json_schema()
        parameters = {key: value for key, value in schema.get("properties", {}).items() if key not in ("p", "strict")}
        catalogue[name] = {"parameters": parameters, "bounds": {key: list(bound) for key, bound in bounds.items()}}
    return catalogue


def plain(params: dict[str, Any]) -> dict[str, Any]:
    """The numbers, words and short lists among an allow-listed transform's drawn parameters (not its noise maps
    or lookup tables)."""
    kept: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, bool | int | float | str) and key != "shape":
            kept[key] = round(value, 6) if isinstance(value, float) else value
        elif isinstance(value, list | tuple) and len(value) <= 8 and all(isinstance(v, int | float) for v in value):
            kept[key] = [round(float(v), 6) for v in value]
    return kept
