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

INT64_MAX = (1 << 63) - 1


def a_number(value: object) -> object:
    if isinstance(value, bool | str | bytes):
        context = {"kind": type(value).__name__, "value": repr(value)[:40]}
        raise PydanticCustomError("number_type", "must be a number, not {kind} {value}", context)
    return value


def all_numbers(value: object) -> object:
    """:func:`a_number` over a list's items, looked at by type in one pass: a list of a million positions costs
    40 ms more than pydantic's own check, where a validator per item would cost 800."""
    if isinstance(value, list) and not {bool, str, bytes}.isdisjoint(map(type, value)):
        for item in value:
            a_number(item)
    return value


def _int64(schema: dict[str, Any]) -> None:
    """State the upper bound as OpenAPI's ``format: int64``, not as ``maximum``: FastAPI writes every bound as a
    float, and 2**63 - 1 as a float is spelled 9.223372036854776e+18, which a reader of the JSON takes at its word
    (9223372036854776000, past the bound). The format's range is exact, and schemathesis generates within it."""
    schema.pop("maximum", None)
    schema["format"] = "int64"


Boolean = Annotated[bool, Strict()]  # true and false only: lax mode would take "yes", 1 and "on"
Number = Annotated[float, BeforeValidator(a_number)]
Integer = Annotated[int, BeforeValidator(a_number)]
# An integer a signed 64-bit integer holds (a seed: derive_seed's are 63 bits); a field adds its own lower bound.
Int64 = Annotated[int, Field(le=INT64_MAX, json_schema_extra=_int64), BeforeValidator(a_number)]


def bounded(kind: type[int] | type[float], **bounds: float) -> Any:
    """A number within ``bounds`` (``ge``, ``gt``, ``le``), for places a Field cannot go (a tuple's items): the
    bounds come before the check so that the JSON schema states them (as ``minimum``, not an unknown ``ge``)."""
    return Annotated[kind, Field(**bounds), BeforeValidator(a_number)]


def numbers(kind: type[int] | type[float], **bounds: float) -> Any:
    """A list of numbers within ``bounds``, each refused as :func:`a_number` refuses it, checked at list speed."""
    return Annotated[list[Annotated[kind, Field(**bounds)]], BeforeValidator(all_numbers)]
