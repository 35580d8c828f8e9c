"""Read the deployment files the way the tests compare them: the Dockerfile's instructions, YAML documents,
and the real ``AUGSERVE_*`` names from the settings class (so a typo in a manifest cannot pass unnoticed).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from augserve.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKER_DIR = REPO / "docker"
K8S_DIR = DOCKER_DIR / "k8s"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, ENV, CMD, ...
    args: str  # the rest of the instruction, continuation lines joined


def instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """Every instruction in order; comment lines dropped, backslash continuations joined."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    logical = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in logical.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            found.append(Instruction(keyword.upper(), args.strip()))
    return found


def final_stage(path: Path = DOCKERFILE) -> list[Instruction]:
    """Instructions of the last stage, the one that becomes the image."""
    all_ = instructions(path)
    start = max(index for index, instruction in enumerate(all_) if instruction.keyword == "FROM")
    return all_[start:]


def env(stage: list[Instruction]) -> dict[str, str]:
    """``ENV`` values of one stage, unexpanded (``$PATH`` stays literal)."""
    values: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.args):
                key, _, value = pair.partition("=")
                values[key] = value
    return values


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) argument list; shell form is refused so signals reach the service."""
    parsed = json.loads(args)
    assert isinstance(parsed, list) and all(isinstance(item, str) for item in parsed), args
    return parsed


def start_command(stage: list[Instruction]) -> list[str]:
    """What the container runs: ENTRYPOINT followed by CMD, each in exec form."""
    last = {i.keyword: i.args for i in stage if i.keyword in ("ENTRYPOINT", "CMD")}
    return [*exec_form(last.get("ENTRYPOINT", "[]")), *exec_form(last.get("CMD", "[]"))]


def healthcheck_command(stage: list[Instruction]) -> list[str]:
    """The HEALTHCHECK's ``CMD [...]`` in exec form, options dropped."""
    (check,) = [i.args for i in stage if i.keyword == "HEALTHCHECK"]
    _, _, command = check.partition(" CMD ")
    return exec_form(command)


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def settings_env_names() -> set[str]:
    """Every environment variable the service reads: ``AUGSERVE_`` + each Settings field."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}
