"""``augserve serve``: the service under uvicorn.

One rule for every setting: a flag beats its ``AUGSERVE_*`` environment variable, which beats the default in
``augserve.settings.Settings``, the one place settings are defined and validated. The flags given are written
back into ``AUGSERVE_*`` before uvicorn starts, because the app factory (``create_app()``) builds its own
``Settings()`` from the environment in every worker process.
"""

from __future__ import annotations

import errno
import os
import socket
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import CliError, server_settings


class LogLevel(str, Enum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"
    trace = "trace"


def _help(text: str, variable: str, default: str) -> str:
    # The defaults written here are Settings' own; tests/test_cli.py checks that they still are.
    return f"{text} (env AUGSERVE_{variable}; default {default})"


def serve(
    host: Annotated[
        str | None, typer.Option(help=_help("address to listen on; 0.0.0.0 for every interface", "HOST", "127.0.0.1"))
    ] = None,
    port: Annotated[int | None, typer.Option(help=_help("port to listen on", "PORT", "8000"))] = None,
    workers: Annotated[int | None, typer.Option(help=_help("uvicorn worker processes", "WORKERS", "1"))] = None,
    threads: Annotated[
        int | None,
        typer.Option(help=_help("augmentation threads per worker; 0 shares the cores among workers", "THREADS", "0")),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help=_help("writable dataset store, shared by replicas", "DATA_DIR", "data"))
    ] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(help=_help("read-only root for server-side folder datasets", "DATA_ROOT", "none")),
    ] = None,
    log_level: Annotated[LogLevel | None, typer.Option(help=_help("uvicorn's log level", "LOG_LEVEL", "info"))] = None,
) -> None:
    """Run the augmentation service.

    Flags beat `AUGSERVE_*` environment variables, which beat the defaults. Every other setting (limits, cache,
    draining) is an `AUGSERVE_*` variable: README.md, "Configuration".
    """
    flags = {
        "host": host,
        "port": port,
        "workers": workers,
        "threads": threads,
        "data_dir": data_dir,
        "data_root": data_root,
        "log_level": log_level.value if log_level is not None else None,
    }
    given = {name: value for name, value in flags.items() if value is not None}
    settings = build_settings(given)
    check_port_free(settings.host, settings.port)
    for name, value in given.items():
        os.environ[f"AUGSERVE_{name.upper()}"] = str(value)
    from augserve.__main__ import run_server

    run_server(settings)


def build_settings(given: dict[str, Any]) -> Any:
    """Settings from the environment with the given flags on top (pydantic-settings ranks init values first)."""
    from pydantic import ValidationError

    Settings = server_settings()
    try:
        return Settings(**given)
    except ValidationError as error:
        first = error.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        source = f"--{name.replace('_', '-')}" if name in given else f"AUGSERVE_{name.upper()}"
        raise CliError(f"invalid setting {source if name else 'settings'}: {first['msg']}") from None


def check_port_free(host: str, port: int) -> None:
    """Bind the address the way uvicorn will (SO_REUSEADDR), so a busy port is one line, not a traceback."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise CliError(
                    f"port {port} on {host} is already in use: stop what listens there, "
                    "or choose another with --port or AUGSERVE_PORT"
                ) from None
            raise CliError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
