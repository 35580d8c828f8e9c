"""``augserve augment`` and ``augserve preview``: variants of local images, made here or by a server.

In-process, variant ``v`` of image ``i`` is made exactly as ``POST /v1/augment`` makes it: the same decoding
and checks (``codecs.decode``, ``preflight``), the same seed (``derive_seed(seed, i, v)``) and the same files
(``variants.variant_files``), so the same seed and spec give the same bytes with or without a server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import CliError, connect, engine, load_spec

LABEL_HEIGHT = 16  # the strip under each preview tile that holds its seed
TILE_MARGIN = 2  # between a tile's variant and its neighbours

Images = Annotated[
    list[Path],
    typer.Argument(help="image files (JPEG, PNG, WebP, BMP, TIFF, GIF, .npy)", exists=True, dir_okay=False),
]
SpecSource = Annotated[
    str | None,
    typer.Option(
        "--spec",
        "-s",
        help="spec.json, spec.yaml, - for stdin, or inline JSON; none: no ops, PNG out (augserve ops lists the ops)",
    ),
]
Seed = Annotated[
    int | None, typer.Option(min=0, help="the request seed; none: a fresh one, printed so it can be replayed")
]


class Format(str, Enum):
    png = "png"
    jpeg = "jpeg"
    webp = "webp"
    npy = "npy"


def augment(
    images: Images,
    spec: SpecSource = None,
    variants: Annotated[int, typer.Option("--variants", "-n", min=1, help="variants per image")] = 1,
    seed: Seed = None,
    format: Annotated[Format | None, typer.Option(help="output format; overrides the spec's output.format")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", file_okay=False, help="folder for the variants")] = Path(
        "variants"
    ),
    url: Annotated[
        str | None, typer.Option(help="make the variants on this server instead of here (same bytes either way)")
    ] = None,
) -> None:
    """Write variants of images into a folder: 00000_000.png and 00000_000.json (what was applied), ...

    The same files as the service's /v1/augment tar; the same seed and spec give the same bytes.
    """
    checked = load_spec(spec)
    if format is not None:
        checked = checked.model_copy(update={"output": checked.output.model_copy(update={"format": format.value})})
    out.mkdir(parents=True, exist_ok=True)
    if url is None:
        seed = _augment_here(images, checked, variants, seed, out)
    else:
        seed = _augment_there(url, images, checked, variants, seed, out)
    count = f"{len(images)} image{'s' if len(images) > 1 else ''}"
    typer.echo(f"{len(images) * variants} variants of {count} in {out}/ (seed {seed})", err=True)


def _augment_here(paths: list[Path], spec: Any, variants: int, seed: int | None, out: Path) -> int:
    from augserve_client.protocol.seeds import fresh_seed

    found = engine("augment")
    max_pixels = found.Settings().max_pixels
    found.preflight.check_spec(spec, max_pixels)
    seed = fresh_seed() if seed is None else seed
    pipelines = found.PipelineCache()

    def one_image(index: int) -> None:
        path = paths[index]
        image = _decode(found, spec, path, max_pixels)
        pipeline = pipelines.get(spec)
        for variant in range(variants):
            for name, parts in found.variants.variant_files(pipeline, spec, seed, index, path.name, image, variant):
                _write(out / name, parts)

    with ThreadPoolExecutor(min(len(paths), os.cpu_count() or 1)) as pool:
        for _ in pool.map(one_image, range(len(paths))):
            pass
    return seed


def _augment_there(url: str, paths: list[Path], spec: Any, variants: int, seed: int | None, out: Path) -> int:
    from augserve_client.protocol.wire import json_bytes

    with connect(url) as client:
        stream = client.augment(paths, spec, variants=variants, seed=seed, format=None)
        for variant in stream:
            _write(out / variant.name, [variant.data])
            _write(out / f"{variant.meta['key']}.json", [json_bytes(variant.meta)])
        return stream.seed


def _decode(found: Any, spec: Any, path: Path, max_pixels: int) -> Any:
    """Decoded and checked as the service decodes and checks an upload (``variants._decode_all``)."""
    image = found.codecs.decode(path.read_bytes(), path.name, max_pixels)
    found.preflight.check_fits(spec, image.shape[0], image.shape[1], path.name)
    return image


def _write(path: Path, parts: Iterable[Any]) -> None:
    with open(path, "wb") as file:
        for part in parts:
            file.write(part)


def preview(
    image: Annotated[Path, typer.Argument(help="one image file", exists=True, dir_okay=False)],
    spec: SpecSource = None,
    grid: Annotated[str, typer.Option(help="COLUMNSxROWS tiles, one variant each")] = "4x4",
    seed: Seed = None,
    tile: Annotated[int, typer.Option(min=16, max=2048, help="tile side in pixels; variants are scaled to fit")] = 192,
    out: Annotated[Path, typer.Option("--out", "-o", dir_okay=False, help="the contact sheet (PNG)")] = Path(
        "preview.png"
    ),
) -> None:
    """A contact sheet of variants of one image, each labelled with its seed: see what a spec does.

    Tile k is variant k of `augserve augment IMAGE --seed SEED -n COLUMNS*ROWS` (the seed is printed).
    """
    from augserve_client.protocol.seeds import derive_seed, fresh_seed

    columns, rows = _grid(grid)
    checked = load_spec(spec)
    found = engine("preview")
    from PIL import Image, ImageDraw, ImageFont

    max_pixels = found.Settings().max_pixels
    found.preflight.check_spec(checked, max_pixels)
    decoded = _decode(found, checked, image, max_pixels)
    pipeline = found.Pipeline(checked)
    seed = fresh_seed() if seed is None else seed
    sheet = Image.new("RGB", (columns * tile, rows * (tile + LABEL_HEIGHT)), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    inner = tile - 2 * TILE_MARGIN
    for k in range(columns * rows):
        variant_seed = derive_seed(seed, 0, k)
        variant = Image.fromarray(pipeline.image(decoded, variant_seed))
        scale = min(inner / variant.width, inner / variant.height)
        size = (max(1, round(variant.width * scale)), max(1, round(variant.height * scale)))
        # Enlarged small variants keep their pixels visible; shrunk ones are filtered.
        variant = variant.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS)
        x, y = (k % columns) * tile, (k // columns) * (tile + LABEL_HEIGHT)
        sheet.paste(variant, (x + (tile - size[0]) // 2, y + (tile - size[1]) // 2))
        draw.text((x + 3, y + tile + 2), f"{k}  seed {variant_seed}", fill=(235, 235, 235), font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG")
    typer.echo(f"{columns * rows} variants of {image.name} in {out} (seed {seed})", err=True)


def _grid(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or not (0 < int(match[1]) <= 32 and 0 < int(match[2]) <= 32):
        raise CliError(f"--grid must be COLUMNSxROWS with 1 to 32 of each, like 4x4; got {text!r}")
    return int(match[1]), int(match[2])
