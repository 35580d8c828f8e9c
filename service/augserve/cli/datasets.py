"""``augserve datasets ...``: register, list, describe and delete datasets on a server (the base install)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from .common import DEFAULT_URL, CliError, Url, connect, print_json


class LayoutChoice(str, enum.Enum):
    """The contract's folder layouts (``augserve_client.protocol.datasets.LAYOUTS``, which a test holds this to),
    named here because importing the contract loads pydantic, which ``augserve --help`` must not wait for."""

    imagefolder = "imagefolder"
    segmentation = "segmentation"
    coco = "coco"


app = typer.Typer(
    name="datasets",
    help="Datasets on a server: upload a folder (classes, segmentation masks or COCO boxes), list, show, remove.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)


@app.command(no_args_is_help=True)
def upload(
    folder: Annotated[
        Path,
        typer.Argument(
            help="a local folder: FOLDER/<class>/<image>, FOLDER/images + FOLDER/masks, or images + instances_*.json",
            exists=True,
            file_okay=False,
        ),
    ],
    name: Annotated[str | None, typer.Option(help="dataset name; none: named after its content (ds-...)")] = None,
    layout: Annotated[
        LayoutChoice | None,
        typer.Option(help="how FOLDER is laid out; none: told from the folder (images/ + masks/, instances_*.json)"),
    ] = None,
    url: Url = DEFAULT_URL,
) -> None:
    """Upload a folder (only the files the server lacks) and register it; prints the dataset."""
    with connect(url) as client:
        try:
            print_json(client.upload_folder(name, folder, layout=None if layout is None else layout.value))
        except ValueError as error:  # no images in class subfolders, a mask without its image, a bad annotation
            raise CliError(str(error)) from None


@app.command("ls")
def list_datasets(
    url: Url = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="the server's JSON instead of a table")] = False,
) -> None:
    """List the server's datasets."""
    with connect(url) as client:
        datasets = client.datasets()
    if as_json:
        print_json(datasets)
        return
    rows = [("name", "kind", "images", "classes", "bytes", "created")]
    rows += [
        (d["name"], d["kind"], str(d["count"]), str(len(d.get("classes") or [])), str(d["bytes"]), str(d["created"]))
        for d in datasets
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@app.command(no_args_is_help=True)
def show(name: Annotated[str, typer.Argument(help="dataset name")], url: Url = DEFAULT_URL) -> None:
    """Describe one dataset (count, classes, bytes, the server's cache) as JSON."""
    with connect(url) as client:
        print_json(client.describe(name))


@app.command("rm", no_args_is_help=True)
def remove(name: Annotated[str, typer.Argument(help="dataset name")], url: Url = DEFAULT_URL) -> None:
    """Delete a dataset: its manifest goes, its stored images stay (other datasets may share them)."""
    with connect(url) as client:
        client.delete_dataset(name)
    typer.echo(f"deleted {name}", err=True)
