"""Numbers (and booleans) as JSON has them, for every model of the contract.

pydantic's lax mode takes ``"0.5"`` and ``true`` for a number; the JSON schema the models publish says number,
so the models refuse them too (the schema tells the truth: ``tests/test_schema.py``). An integer may still be
written ``3.0``, as JSON Schema allows. The error's type is ``number_type``, not ``value_error``: it is a rule
of types, not one that compares fields.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, Strict
from pydantic.functional_validators import BeforeValidator
from pydantic_core import PydanticCustomError


def a_number(value: object) -> object:
    if isinstance(value, bool | str | bytes):
        raise PydanticCustomError(
            "number_type", "must be a number, not {kind} {value!r}", {"kind": type(value).__name__, "value": value}
        )
    return value


Boolean = Annotated[bool, Strict()]  # true and false only: lax mode would take "yes", 1 and "on"
Number = Annotated[float, BeforeValidator(a_number)]
Integer = Annotated[int, BeforeValidator(a_number)]


def bounded(kind: type[int] | type[float], **bounds: float) -> Any:
    """A number within ``bounds`` (``ge``, ``gt``, ``le``), for places a Field cannot go (a tuple's items): the
    bounds come before the check so that the JSON schema states them (as ``minimum``, not an unknown ``ge``)."""
    return Annotated[kind, Field(**bounds), BeforeValidator(a_number)]
