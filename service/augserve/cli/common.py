"""What every command shares: one-line errors, reading a spec file, reaching a server, the server extra.

Imports stay light at module level (typer and the standard library): ``augserve --help`` and the client-side
commands run from the base install, and the engine is imported only by the commands that need it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from augserve_client.client import Client
    from augserve_client.protocol.spec import Spec

DEFAULT_URL = "http://127.0.0.1:8000"
SERVER_EXTRA = "pip install 'augserve[server]'"

Url = Annotated[
    str,
    typer.Option("--url", envvar="AUGSERVE_URL", help="the augserve server (env AUGSERVE_URL)", show_default=True),
]


class CliError(Exception):
    """A failure the command line reports as one line, ``error: <message>``, exiting with status 1."""


def describe(error: BaseException) -> str:
    """The one line printed for ``error``: the server's code and message, or what to do about it."""
    from augserve_client.protocol.errors import AugserveError, ServerError

    if isinstance(error, CliError):
        message = str(error)
    elif isinstance(error, ServerError):
        message = f"{error.code}: {error.message}"
    elif isinstance(error, AugserveError):
        message = str(error)
    elif _is_service_error(error):
        message = f"{error.code.value}: {error.message}"  # type: ignore[attr-defined]
    elif isinstance(error, OSError) and error.filename is not None:
        message = f"{error.filename}: {error.strerror}"
    else:
        message = f"{type(error).__name__}: {error} (run `augserve --debug ...` for the traceback)"
    return " ".join(message.splitlines())


def _is_service_error(error: BaseException) -> bool:
    """The engine's and codecs' own ServiceError (only importable with the server extra, only then raised)."""
    errors = sys.modules.get("augserve.errors")
    return errors is not None and isinstance(error, errors.ServiceError)


def engine(command: str) -> SimpleNamespace:
    """The engine, codecs and settings an in-process command needs, or one line naming the extra."""
    with _server_extra(command):
        from augserve import codecs, preflight, variants
        from augserve.engine import Pipeline, PipelineCache
        from augserve.settings import Settings
    return SimpleNamespace(
        codecs=codecs,
        preflight=preflight,
        variants=variants,
        Pipeline=Pipeline,
        PipelineCache=PipelineCache,
        Settings=Settings,
    )


def server_settings() -> Any:
    """The ``Settings`` class, once ``serve`` is sure it has what it runs (the engine is left to the app)."""
    with _server_extra("serve"):
        for module in ("fastapi", "uvicorn", "albumentations", "cv2"):
            if importlib.util.find_spec(module) is None:
                raise ImportError(name=module)
        from augserve.settings import Settings
    return Settings


@contextmanager
def _server_extra(command: str) -> Iterator[None]:
    try:
        yield
    except ImportError as error:
        missing = f" ({error.name} is missing)" if error.name else ""
        raise CliError(f"`augserve {command}` needs the server extra: {SERVER_EXTRA}{missing}") from None


# --- specs -------------------------------------------------------------------------------------------------


def load_spec(source: str | None) -> Spec:
    """A spec from a .json/.yaml/.yml file, ``-`` (stdin, JSON or YAML), or inline JSON (``'{"ops": ...}'``).

    Every failure is a CliError in the server's words: ``invalid_spec: spec.ops[1].angle: ...``."""
    from augserve_client.protocol.errors import field_path
    from augserve_client.protocol.spec import Spec
    from pydantic import ValidationError

    if source is None:
        return Spec()
    if source == "-":
        text, where = sys.stdin.read(), "stdin"
    elif source.lstrip().startswith("{"):
        text, where = source, "the inline spec"
    else:
        where = source
        try:
            text = Path(source).read_text()
        except OSError as error:
            raise CliError(f"spec file {source}: {error.strerror}") from None
    yaml_file = where.lower().endswith((".yaml", ".yml")) or (where == "stdin" and not text.lstrip().startswith("{"))
    data = _parse_yaml(text, where) if yaml_file else _parse_json(text, where)
    try:
        return Spec.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        raise CliError(f"invalid_spec: {field_path(first['loc'], 'spec')}: {first['msg']}") from None


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise CliError(f"invalid_spec: {where} is not valid JSON: {error}") from None


def _parse_yaml(text: str, where: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise CliError(f"{where} is YAML, which needs PyYAML: pip install pyyaml (or write the spec as JSON)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or error
        raise CliError(f"invalid_spec: {where} is not valid YAML{at}: {problem}") from None


# --- servers -----------------------------------------------------------------------------------------------


@contextmanager
def connect(url: str) -> Iterator[Client]:
    """A Client for ``url``; a server that cannot be reached is one line saying so.

    The one place the server package takes more than the contract from the client package: the CLI is a
    client of the service too (tests/test_layout.py needs to allow it; the app never imports cli/)."""
    from augserve_client.client import Client
    from augserve_client.protocol.errors import TransportError

    try:
        with Client(url, timeout=120) as client:
            yield client
    except TransportError as error:
        raise CliError(
            f"cannot reach the server at {url} ({error}); start one with `augserve serve`, "
            "or point --url / AUGSERVE_URL at one"
        ) from None


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))
