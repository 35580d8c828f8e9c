"""``augserve validate`` and ``augserve ops``: the spec, checked and described here, with no server.

Both answer from the contract (``augserve_client.protocol.spec``) that the server itself validates with, so
they give what ``POST /v1/specs/validate`` and ``GET /v1/ops`` give.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from .common import load_spec, print_json


def validate(
    spec: Annotated[str, typer.Argument(help="spec.json, spec.yaml, - for stdin, or inline JSON")],
) -> None:
    """Check a spec and print its normalised form (every default filled in) as JSON.

    A bad spec is one line naming the field, as the server's 422 does, and exit status 1.
    """
    print_json(load_spec(spec).model_dump(mode="json"))


def ops(
    as_json: Annotated[bool, typer.Option("--json", help="the JSON schemas, as GET /v1/ops gives them")] = False,
) -> None:
    """List the ops a spec can use, with every parameter's type, default and meaning."""
    from ..catalogue import ops_document  # imports albumentations: only for this command

    document = ops_document()
    if as_json:
        print_json(document)
        return
    rows = [("op", "parameter", "type", "default", "meaning")]
    sections = [*document["ops"].items(), ("output", document["output"])]
    for name, schema in sections:
        for field, prop in schema["properties"].items():
            if field != "op":
                default = json.dumps(prop["default"]) if "default" in prop else "required"
                rows.append((name, field, _type(prop), default, prop.get("description", "")))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        typer.echo("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[4]]).rstrip())


def _type(prop: dict[str, Any]) -> str:
    """A JSON schema in a few characters: ``number 0..1``, ``[number, number]``, ``a|b|c``."""
    if "enum" in prop:
        return "|".join(str(value) for value in prop["enum"])
    if "anyOf" in prop:
        return " or ".join(_type(option) for option in prop["anyOf"])
    if prop.get("type") == "array" and "prefixItems" in prop:
        return "[" + ", ".join(_type(item) for item in prop["prefixItems"]) + "]"
    kind = str(prop.get("type", "any"))
    low = prop.get("minimum", prop.get("exclusiveMinimum"))
    if kind == "integer" and "exclusiveMinimum" in prop:
        low += 1
    high = prop.get("maximum", prop.get("exclusiveMaximum"))
    return f"{kind} {_number(low)}..{_number(high)}" if low is not None and high is not None else kind


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
