"""docker/compose.yaml and its override: valid Compose files, and shaped so `--scale augserve=N` works.

No Docker engine here: the files are checked against the vendored Compose Specification schema, and the facts
that make scaling and load balancing work are checked against the other deployment files they refer to.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from deploy_files import DOCKER_DIR, env, final_stage, instructions, settings_env_names, yaml_documents

SCHEMA = json.loads((DOCKER_DIR / "schema" / "compose-spec.json").read_text())
COMPOSE = DOCKER_DIR / "compose.yaml"
OVERRIDE = DOCKER_DIR / "compose.override.yaml"


def load(path: Path) -> dict[str, Any]:
    (document,) = yaml_documents(path)
    return document


# The schema names draft 2019-09 as "http://json-schema.org/draft/2019-09/schema#", a spelling jsonschema does
# not look up (it would fall back to the latest draft with a warning): name the draft here instead.
VALIDATOR = jsonschema.Draft201909Validator


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = VALIDATOR(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize("path", [COMPOSE, OVERRIDE], ids=lambda p: p.name)
def test_valid_against_compose_spec(path: Path) -> None:
    assert schema_errors(load(path)) == []


def test_schema_rejects_what_compose_rejects() -> None:
    """The vendored schema is intact and strict: a misspelt key or a bad condition does not slip through."""
    VALIDATOR.check_schema(SCHEMA)
    assert schema_errors({"services": {"augserve": {"replica": 4}}})
    assert schema_errors({"services": {"a": {"depends_on": {"b": {"condition": "healthy"}}}}})


def test_augserve_scales() -> None:
    service = load(COMPOSE)["services"]["augserve"]
    assert "ports" not in service and "container_name" not in service
    assert service["expose"] == [env(final_stage())["AUGSERVE_PORT"]]
    for path in (COMPOSE, OVERRIDE):
        assert not {"ports", "container_name"} & set(load(path)["services"].get("augserve", {}))


def test_replicas_share_one_named_volume_for_the_store() -> None:
    compose = load(COMPOSE)
    data_dir = env(final_stage())["AUGSERVE_DATA_DIR"]
    mounts = [volume.split(":") for volume in compose["services"]["augserve"]["volumes"]]
    (store,) = [source for source, target, *_ in mounts if target == data_dir]
    assert store in compose["volumes"], "the store must be a named volume, shared by every replica"


def test_folder_datasets_are_mounted_read_only_at_data_root() -> None:
    service = load(COMPOSE)["services"]["augserve"]
    root = service["environment"]["AUGSERVE_DATA_ROOT"]
    assert any(v.endswith(f":{root}:ro") for v in service["volumes"]), service["volumes"]


def test_environment_names_are_real_settings() -> None:
    names = settings_env_names()
    for path in (COMPOSE, OVERRIDE):
        environment = set(load(path)["services"]["augserve"].get("environment", {}))
        assert environment <= names, f"{path.name}: not settings: {environment - names}"


def test_nginx_balances_the_scaled_service() -> None:
    services = load(COMPOSE)["services"]
    nginx = services["nginx"]
    assert nginx["depends_on"] == {"augserve": {"condition": "service_healthy"}}
    assert "/readyz" in " ".join(services["augserve"]["healthcheck"]["test"])
    (conf_mount,) = nginx["volumes"]
    source, target, mode = conf_mount.split(":")
    assert (DOCKER_DIR / source).resolve() == DOCKER_DIR / "nginx.conf" and target == "/etc/nginx/nginx.conf"
    assert mode == "ro"
    conf = (DOCKER_DIR / "nginx.conf").read_text()
    (published,) = nginx["ports"]
    assert re.search(rf"^\s*listen {published.rsplit(':', 1)[1]};", conf, re.MULTILINE)
    assert "server augserve:8000 resolve;" in conf


def test_nginx_image_understands_resolve() -> None:
    """`server ... resolve` in an upstream block exists in open-source nginx from 1.27.3 on."""
    image = load(COMPOSE)["services"]["nginx"]["image"]
    match = re.fullmatch(r"nginx:(\d+)\.(\d+)(?:\.(\d+))?-alpine", image)
    assert match, image
    version = tuple(int(part) for part in match.groups("99"))  # 1.28 = the newest 1.28.x
    assert version >= (1, 27, 3), image


def test_body_limit_matches_nginx() -> None:
    environment = load(COMPOSE)["services"]["augserve"]["environment"]
    assert environment["AUGSERVE_MAX_REQUEST_BYTES"] == str(256 << 20)
    assert "client_max_body_size 256m;" in (DOCKER_DIR / "nginx.conf").read_text()


def test_override_mounts_source_over_the_installed_packages() -> None:
    python = re.search(r"python:(\d+\.\d+)", instructions()[0].args)
    assert python, "the Dockerfile's first line is ARG PYTHON_IMAGE=python:X.Y-..."
    for volume in load(OVERRIDE)["services"]["augserve"]["volumes"]:
        source, target, _ = volume.split(":")
        assert (DOCKER_DIR / source).is_dir(), source
        assert target.startswith(f"/opt/venv/lib/python{python[1]}/site-packages/"), target
