"""docs/configuration.md, generated from :class:`augserve.settings.Settings`: every setting, its variable, its
default, what it accepts and what it means.

    python -m augserve.settings_doc            # rewrite docs/configuration.md
    python -m augserve.settings_doc --check    # exit 1 if the file is not what the class says

The class is the one place a setting is defined; this page is read from it (names, defaults, bounds,
descriptions), never written by hand, and ``tests/test_config_reference.py`` fails when the two disagree.
"""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic.fields import FieldInfo

from .settings import Settings

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
PREFIX = Settings.model_config.get("env_prefix", "")
UNITS = ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"))

HEADER = f"""# Configuration reference

<!-- Generated from service/augserve/settings.py by `python -m augserve.settings_doc`: do not edit by hand.
     tests/test_config_reference.py fails when this page and the class disagree. -->

Every setting of the service is an environment variable, `{PREFIX}` and the setting's name in capitals, read
by one pydantic-settings class, `augserve.settings.Settings`. `augserve serve` takes the most used ones as
flags too (`augserve serve --help` lists them); a flag beats its variable, which beats the default. Values are
checked when the server starts: a bad one stops it with a message naming the setting. Sizes are plain integers
of bytes.
"""


def render() -> str:
    """The whole page, from the class as it is now (never from the environment: defaults are the class's)."""
    rows = ["| variable | default | accepts | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{PREFIX}{name.upper()}` | {default(name, field)} | {accepts(field)} | {meaning} |")
    return HEADER + "\n" + "\n".join(rows) + "\n"


def default(name: str, field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int) and name.endswith("_bytes"):
        size = next((f"{value // unit} {label}" for unit, label in UNITS if value >= unit and value % unit == 0), "")
        return f"`{value}` ({size})" if size else f"`{value}`"
    return f"`{value}`"


def accepts(field: FieldInfo) -> str:
    kind, bounds = type_name(field.annotation), {}
    for item in field.metadata:
        for rule, symbol, attribute in ((Ge, "≥", "ge"), (Gt, ">", "gt"), (Le, "≤", "le"), (Lt, "<", "lt")):
            if isinstance(item, rule):
                bounds[symbol] = getattr(item, attribute)
    if set(bounds) == {"≥", "≤"}:
        return f"{kind}, {bounds['≥']} to {bounds['≤']}"
    return " ".join([kind, *(f"{symbol} {value}" for symbol, value in bounds.items())])


def type_name(annotation: Any) -> str:
    """The annotation in words: ``int`` -> integer, ``Path | None`` -> "path, or unset", a Literal its values."""
    arguments = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return " or ".join(f"`{value}`" for value in arguments)
    if type(None) in arguments:
        return f"{type_name(next(a for a in arguments if a is not type(None)))}, or unset"
    names = {bool: "`true` or `false`", int: "integer", float: "number", str: "text", Path: "path"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH, help=f"default: {DEFAULT_PATH}")
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 if they differ")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        current = args.path.read_text() if args.path.exists() else ""
        if current != page:
            print(f"{args.path} is out of date: run python -m augserve.settings_doc", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(page)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
