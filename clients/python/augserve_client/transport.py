"""HTTP plumbing shared by every call: error bodies to typed exceptions, checked streams, raw chunks."""

from __future__ import annotations

import functools
import json
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from .errors import ProtocolError, TransportError, error_from_body


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """httpx's default verifying context, built once per process and shared by every Client.

    httpx builds it in every ``httpx.Client()``, even for plain http, and loading the CA bundle costs ~24 ms of
    CPU. AugmentedDataset opens a Client per DataLoader worker per epoch; forked workers inherit this one."""
    return httpx.create_ssl_context(verify=True, cert=None, trust_env=True)


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
    """The body as it arrives, one piece per socket read (up to 64 KiB), without re-chunking.

    ``iter_raw(chunk_size)`` would re-chunk through a BytesIO (about 0.1 ms of CPU per 150 KB variant here,
    several copies) and hold small variants back until a whole chunk has arrived; the readers in
    :mod:`.wire` take pieces of any size and copy each body once.
    """
    try:
        yield from response.iter_raw()
    except httpx.TransportError as error:
        raise ProtocolError(f"the stream broke off: {error}") from error
