"""HTTP plumbing shared by every call: error bodies to typed exceptions, checked streams, raw chunks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from .errors import ProtocolError, TransportError, error_from_body

CHUNK_BYTES = 1 << 20


def raise_for_error(response: httpx.Response) -> None:
    """Raise the typed exception for an error response (reading its body if it was streamed)."""
    if response.status_code < 400:
        return
    try:
        body = json.loads(response.read())
    except (ValueError, httpx.HTTPError):
        body = {"code": "http_error", "message": f"HTTP {response.status_code}"}
    raise error_from_body(response.status_code, body if isinstance(body, dict) else {"message": str(body)})


@contextmanager
def open_stream(http: httpx.Client, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
    """A streamed response whose status was checked: errors arrive as typed exceptions."""
    try:
        with http.stream(method, path, **kwargs) as response:
            raise_for_error(response)
            yield response
    except httpx.TransportError as error:
        raise TransportError(f"{method} {path}: {error}") from error


def raw_chunks(response: httpx.Response) -> Iterator[bytes]:
    try:
        yield from response.iter_raw(CHUNK_BYTES)
    except httpx.TransportError as error:
        raise ProtocolError(f"the stream broke off: {error}") from error
