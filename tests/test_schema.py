"""schemathesis against a real server's ``/openapi.json``: no 5xx, and the schema tells the truth.

Every check runs (statuses the schema lists, response bodies and headers against their schemas, schema-valid
requests accepted and invalid ones refused, ``Allow`` on 405), in all four phases (examples, coverage,
fuzzing, stateful), seeded and deterministic, with a bounded number of examples per operation.

This module is also the run's hooks module (``SCHEMATHESIS_HOOKS=test_schema``), for what a schema cannot say:

- uploads get a real image, so ``POST /v1/augment`` and ``POST /v1/blobs`` reach their 200 paths too; the
  augment's masks and targets, which must fit the image they go with, are left out;
- JSON Schema cannot compare two fields (a range's min and max, ``shard_index < shard_count``,
  ``end_batch >= start_batch``): generated bodies that break only such a rule are dropped. The contract's
  own models decide which those are: only the rules they check in code (``value_error``), never a type or a
  bound, which the schema must state itself.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from augserve.devserver import ServerProcess
from augserve_client.protocol.epochs import EpochRequest, ReplayRequest
from augserve_client.protocol.spec import Spec
from PIL import Image
from pydantic import BaseModel, ValidationError

EXAMPLES = 20  # per operation and phase: ~1,000 cases, about 40 s on the 2-core CI machine
SEED = 20261203


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), (200, 120, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


def _with_real_images(field: str) -> Callable[[Any, Any], Any]:
    def real_images(_: Any, body: Any) -> Any:
        if isinstance(body, dict) and isinstance(body.get(field), list):
            return {**body, field: [PNG for _ in body[field]]}
        return body

    return real_images


def _augment_body(context: Any, body: Any) -> Any:
    body = _with_real_images("images")(context, body)
    if isinstance(body, dict):  # a mask or box fits its image or is refused: a rule between parts
        body = {key: value for key, value in body.items() if key not in ("masks", "targets")}
    return body


def _augment_spec_kept(context: Any, body: Any) -> bool:
    spec = body.get("spec") if isinstance(body, dict) else None
    return not (isinstance(spec, dict) and _breaks_only_a_cross_field_rule(Spec, spec))


schemathesis.hook("map_body").apply_to(method="POST", path="/v1/augment")(_augment_body)
schemathesis.hook("filter_body").apply_to(method="POST", path="/v1/augment")(_augment_spec_kept)
schemathesis.hook("map_body").apply_to(method="POST", path="/v1/blobs")(_with_real_images("files"))


def _breaks_only_a_cross_field_rule(model: type[BaseModel], body: Any) -> bool:
    try:
        model.model_validate(body)
    except ValidationError as error:
        return all(problem["type"] == "value_error" for problem in error.errors())
    return False


def _keep(model: type[BaseModel]) -> Callable[[Any, Any], bool]:
    def keep(_: Any, body: Any) -> bool:
        return not _breaks_only_a_cross_field_rule(model, body)

    return keep


schemathesis.hook("filter_body").apply_to(method="POST", path="/v1/specs/validate")(_keep(Spec))
schemathesis.hook("filter_body").apply_to(method="POST", path="/v1/datasets/{name}/epochs")(_keep(EpochRequest))
schemathesis.hook("filter_body").apply_to(method="POST", path="/v1/datasets/{name}/replay")(_keep(ReplayRequest))


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose data root is itself an ImageFolder, so a folder registration is judged on its path (a
    missing one is a 404, the root itself registers) rather than refused for want of a root."""
    base = tmp_path_factory.mktemp("schema")
    (base / "root" / "cls").mkdir(parents=True)
    (base / "root" / "cls" / "a.png").write_bytes(PNG)
    server = ServerProcess(base / "data", data_root=base / "root", threads=2).start()
    yield server
    server.stop()


# Operations whose schema does not yet tell the whole truth, each failing for the reason given. Strict: once
# fixed, its test passes, fails as XPASS, and the entry goes.
PENDING = {
    "augment_v1_augment_post": "the albumentations op's transform is an open object in the schema: its class "
    "must be on the allow-list and its parameters pass albumentations' own schemas, which are not in ours",
    "validate_spec_v1_specs_validate_post": "as for augment: the albumentations op's transform is an open object",
    "replay_sample_v1_datasets__name__replay_post": "an index past the dataset is a 404 (a sample that is not "
    "there), which the stateful phase reads as a created resource not found; and a seed just under 2**63 arrives "
    "as a float that rounds up to the bound",
    "stream_epoch_v1_datasets__name__epochs_post": "protocol/epochs.py: end_batch < start_batch and shard_index >= "
    "shard_count are 422s JSON Schema cannot state (the coverage phase ignores filter hooks): an empty range for "
    "the first, as a start at the shard's end already is",
}


def schemathesis_run(server: ServerProcess, include: str | None = None) -> str:
    """The CLI over one operation (by operationId), or over all but the pending ones; its output when it passed."""
    command = [str(Path(sys.executable).parent / "schemathesis"), "run", f"{server.url}/openapi.json"]
    command += ["--checks", "all", "--max-examples", str(EXAMPLES), "--seed", str(SEED)]
    command += ["--generation-deterministic", "--workers", "1", "--no-color"]
    if include is not None:
        command += ["--include-operation-id", include]
    for operation in PENDING if include is None else ():
        command += ["--exclude-operation-id", operation]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "test_schema", "PYTHONPATH": str(Path(__file__).parent)}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=server.data_dir.parent)
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-3000:]
    return run.stdout


@pytest.mark.slow
def test_the_schema_tells_the_truth(api: ServerProcess) -> None:
    output = schemathesis_run(api)
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    assert selected and int(selected[2]) - int(selected[1]) == len(PENDING), output[:2000]
    assert "Traceback" not in Path(api.log_path).read_text(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize(
    "operation", [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=why)) for name, why in PENDING.items()]
)
def test_the_pending_operations_tell_the_truth(api: ServerProcess, operation: str) -> None:
    schemathesis_run(api, operation)
