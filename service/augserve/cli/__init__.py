"""The ``augserve`` command line (also ``python -m augserve``): one entry point, a command per task.

==========================  ================================================================  ==============
command                     does                                                              needs
==========================  ================================================================  ==============
``serve``                   run the service (flags > ``AUGSERVE_*`` > defaults)               server extra
``augment``                 variants of local images into a folder, here or with ``--url``    server extra*
``preview``                 a contact sheet of variants, labelled with their seeds            server extra
``validate``, ``ops``       check a spec; list the ops                                        base install
``datasets ...``            upload, ls, show, rm on a server                                  base install
==========================  ================================================================  ==============

(*) ``augment --url`` runs on the base install. Errors print as one line, ``error: ...``, with exit status 1
(usage errors: typer's message, status 2); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from . import datasets, local, serve, spec
from .common import describe

app = typer.Typer(
    name="augserve",
    help="Image augmentation as a service: run the server, make variants, check specs, manage datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
app.command()(serve.serve)
app.command(no_args_is_help=True)(local.augment)
app.command(no_args_is_help=True)(local.preview)
app.command(no_args_is_help=True)(spec.validate)
app.command()(spec.ops)
app.add_typer(datasets.app)

_debug = False


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"augserve {version('augserve')}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="show the traceback of an error, not one line (anywhere on the line)")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    global _debug
    _debug = _debug or debug


def main(argv: list[str] | None = None) -> None:
    """The console script: run the command line, turning any failure into one line and exit status 1."""
    global _debug
    args = sys.argv[1:] if argv is None else list(argv)
    end = args.index("--") if "--" in args else len(args)
    if "--debug" in args[:end]:  # accepted after the command too: `augserve augment ... --debug`
        _debug = True
        args.remove("--debug")
    command = typer.main.get_command(app)
    try:
        command.main(args=args, prog_name="augserve")
    except Exception as error:  # click has already handled its own usage errors and exits
        if _debug:
            raise
        typer.echo(f"error: {describe(error)}", err=True)
        sys.exit(1)
