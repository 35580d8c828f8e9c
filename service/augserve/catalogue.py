"""What ``GET /v1/ops`` and ``augserve ops`` answer: every op with its JSON schema, the output section's, the
albumentations transforms the ``albumentations`` op may carry (their parameters and bounds), and an example.
One document, so the command line and the service cannot drift apart."""

from __future__ import annotations

from typing import Any

from augserve_client.protocol.spec import EXAMPLE_SPEC, OPS, Output, Spec

from .engine.allowed import allowed_catalogue


def ops_document() -> dict[str, Any]:
    return {
        "version": Spec.model_fields["version"].default,
        "ops": {name: model.model_json_schema() for name, model in OPS.items()},
        "output": Output.model_json_schema(),
        "albumentations": allowed_catalogue(),
        "example": EXAMPLE_SPEC,
    }
