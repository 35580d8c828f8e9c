"""schemathesis against a real server's ``/openapi.json``: no 5xx, and the schema tells the truth.

Every check runs (statuses the schema lists, response bodies and headers against their schemas, schema-valid
requests accepted and invalid ones refused, ``Allow`` on 405), in all four phases (examples, coverage,
fuzzing, stateful), seeded and deterministic, with a bounded number of examples per operation.

This module is also the run's hooks module (``SCHEMATHESIS_HOOKS=test_schema``), for what a schema cannot say:

- uploads get a real image (``map_body``), so ``POST /v1/augment`` and ``POST /v1/blobs`` reach their 200 paths
  too; the augment's masks and targets, which must fit the image they go with, are left out;
- JSON Schema cannot compare two fields (a range's min and max, ``shard_index < shard_count``,
  ``end_batch >= start_batch``, one label per box): generated bodies that break only such a rule are dropped
  (``filter_case``, which the coverage phase applies too). The contract's own models decide which those are:
  only the rules they check in code (``value_error``), never a type or a bound, which the schema must state;
- one such rule would drop nearly every albumentations op: an op's ``p`` and its transform's own ``p`` must not
  differ. Bodies are given one ``p`` instead (``map_case``, after which schemathesis judges the case afresh);
- the coverage phase enumerates each shape once, where it is checked the same way: the spec's insides on
  ``POST /v1/specs/validate`` (epochs and replay embed the same model in a JSON body) and its albumentations
  transforms (``protocol/allowlist.py``: one shape per class, each parameter with its type and bounds) there,
  in their bare form (the whole ``A.to_dict`` form wraps the same shapes). On ``POST /v1/augment`` it leaves
  them out too: ``map_body`` does not reach that phase, so it sends schemathesis's own one-pixel image, which
  albumentations' ToGray, HueSaturationValue and Downscale cannot render. The fuzzing phase draws transforms
  on every route, and renders them on a real image.

A 413 is a limit's refusal (docs/wire-format.md: a setting of this server, named in ``limit``): of more images
than ``max_images`` (which the schema states), or of a valid spec or batch over ``max_pixels`` or
``max_batch_size`` (a product, or a setting, which it cannot). The run's configuration adds it to the statuses
schemathesis takes as a refusal, and as an answer to a valid request, on the routes with such limits.
"""

from __future__ import annotations

import copy
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
from augserve_client.protocol.datasets import CreateDataset
from augserve_client.protocol.epochs import EpochRequest, ReplayRequest
from augserve_client.protocol.spec import Spec
from PIL import Image
from pydantic import BaseModel, ValidationError

EXAMPLES = 20  # per operation and phase: ~5,000 cases in all, most of them the coverage phase's, ~60 s on 2 cores
SEED = 20261203
REFUSED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "413", "429", "5xx"]
LIMITED = ["POST /v1/specs/validate", "POST /v1/datasets/{name}/epochs", "POST /v1/datasets/{name}/replay"]
CONFIG = f"""
[[operations]]
include-name = "POST /v1/augment"
checks.negative_data_rejection.expected-statuses = {REFUSED!r}
checks.positive_data_acceptance.expected-statuses = {ACCEPTED!r}

[[operations]]
include-name = {LIMITED!r}
checks.positive_data_acceptance.expected-statuses = {ACCEPTED!r}
"""


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), (200, 120, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


def _one_p(op: Any) -> None:
    """An albumentations op's ``p`` and its transform's own, made one (giving two that differ is a rule between
    two fields): the transform's, unless the op's breaks its type or bounds, which then is what the case tests."""
    transform = op.get("transform") if isinstance(op, dict) else None
    if isinstance(transform, dict) and isinstance(transform.get("transform"), dict):
        transform = transform["transform"]  # the whole A.to_dict form
    if not isinstance(transform, dict) or transform.get("p") is None or op.get("p") is None:
        return
    if isinstance(op["p"], int | float) and not isinstance(op["p"], bool) and 0 <= op["p"] <= 1:
        op["p"] = transform["p"]
    else:
        transform["p"] = op["p"]


def _ops(body: Any, field: str | None) -> list[Any]:
    spec = body.get(field) if field is not None and isinstance(body, dict) else body
    ops = spec.get("ops") if isinstance(spec, dict) else None
    return ops if isinstance(ops, list) else []


def _with_one_p(body: Any, field: str | None) -> Any:
    """``body`` (changed in place) with one ``p`` per albumentations op."""
    for op in _ops(body, field):
        _one_p(op)
    return body


def _one_p_per_op(field: str | None) -> Callable[[Any, Any], Any]:
    def one_p(_: Any, case: Any) -> Any:
        _with_one_p(case.body, field)
        return case

    return one_p


def _with_real_images(field: str) -> Callable[[Any, Any], Any]:
    def real_images(_: Any, body: Any) -> Any:
        if isinstance(body, dict) and isinstance(body.get(field), list):
            return {**body, field: [PNG for _ in body[field]]}
        return body

    return real_images


def _augment_body(context: Any, body: Any) -> Any:
    body = _with_one_p(_with_real_images("images")(context, body), "spec")
    if isinstance(body, dict):  # a mask or box fits its image or is refused: a rule between parts
        body = {key: value for key, value in body.items() if key not in ("masks", "targets")}
    return body


def _breaks_only_a_cross_field_rule(model: type[BaseModel], body: Any) -> bool:
    try:
        model.model_validate(body)
    except ValidationError as error:
        return all(problem["type"] == "value_error" for problem in error.errors())
    return False


def _keep(model: type[BaseModel], spec: str | None = None, *, only_spec: bool = False) -> Callable[[Any, Any], bool]:
    """Keep a case unless its body (its ``spec`` field when ``only_spec``), with one ``p`` per op as it will be
    sent (the filter runs before the map that sends it so), breaks only rules ``model`` checks in code."""

    def keep(_: Any, case: Any) -> bool:
        body = _with_one_p(copy.deepcopy(case.body), spec)
        if only_spec:
            body = body.get(spec) if isinstance(body, dict) else None
            if not isinstance(body, dict):
                return True
        return not _breaks_only_a_cross_field_rule(model, body)

    return keep


def _coverage(case: Any) -> Any:
    """The coverage phase's data on a case (its scenario, and where in the schema it mutated), else None."""
    return case.meta.phase.data if case.meta is not None and case.meta.phase.name == "coverage" else None


def _transforms_not_enumerated_here(spec: str) -> Callable[[Any, Any], bool]:
    """Leave the albumentations ops out of this route's coverage phase (see the module's docstring)."""

    def not_here(_: Any, case: Any) -> bool:
        albumentations = [
            op for op in _ops(case.body, spec) if isinstance(op, dict) and op.get("op") == "albumentations"
        ]
        return _coverage(case) is None or not albumentations

    return not_here


def _spec_enumerated_on_validate(_: Any, case: Any) -> bool:
    """Leave the embedded spec's insides out of this route's coverage phase: a JSON body's spec is the same model,
    checked the same way, as ``POST /v1/specs/validate``'s, which enumerates them (the spec itself stays: its
    absence, its type)."""
    data = _coverage(case)
    if data is None:
        return True
    inside = "/properties/spec/properties/" in (data.location or "")
    return not inside and not data.description.startswith("Object with valid 'spec' value: ")


def _bare_transforms_only(_: Any, case: Any) -> bool:
    """Leave out the coverage cases that enumerate the shapes inside the whole ``A.to_dict`` form: the valid ones
    (no location) and the mutations inside its ``transform`` (a transform inside a transform)."""
    data = _coverage(case)
    if data is None:
        return True
    if data.location:
        return data.location.count("/properties/transform/") < 2
    whole = [op for op in _ops(case.body, None) if isinstance(op, dict) and isinstance(op.get("transform"), dict)]
    return not any(isinstance(op["transform"].get("transform"), dict) for op in whole)


def _on(kind: str, method: str, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return schemathesis.hook(kind).apply_to(method=method, path=path)


_on("map_body", "POST", "/v1/augment")(_augment_body)
_on("filter_case", "POST", "/v1/augment")(_keep(Spec, "spec", only_spec=True))
_on("filter_case", "POST", "/v1/augment")(_transforms_not_enumerated_here("spec"))
_on("map_body", "POST", "/v1/blobs")(_with_real_images("files"))
_on("filter_case", "POST", "/v1/specs/validate")(_keep(Spec))
_on("filter_case", "POST", "/v1/specs/validate")(_bare_transforms_only)
_on("map_case", "POST", "/v1/specs/validate")(_one_p_per_op(None))
_on("filter_case", "POST", "/v1/datasets")(_keep(CreateDataset))
for _path, _model in (("/v1/datasets/{name}/epochs", EpochRequest), ("/v1/datasets/{name}/replay", ReplayRequest)):
    _on("filter_case", "POST", _path)(_keep(_model, "spec"))
    _on("filter_case", "POST", _path)(_spec_enumerated_on_validate)
    _on("map_case", "POST", _path)(_one_p_per_op("spec"))


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


def schemathesis_run(server: ServerProcess) -> str:
    """The CLI over every operation; its output when it passed."""
    config = server.data_dir.parent / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(config), "run"]
    command += [f"{server.url}/openapi.json", "--checks", "all", "--max-examples", str(EXAMPLES), "--seed", str(SEED)]
    command += ["--generation-deterministic", "--workers", "1", "--no-color"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "test_schema", "PYTHONPATH": str(Path(__file__).parent)}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=server.data_dir.parent)
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-3000:]
    return run.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)  # one run over every operation: ~60 s, twice that on a machine others load
def test_the_schema_tells_the_truth(api: ServerProcess) -> None:
    output = schemathesis_run(api)
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    assert selected and selected[1] == selected[2], output[:2000]
    assert "Traceback" not in Path(api.log_path).read_text(errors="replace")
