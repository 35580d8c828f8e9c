"""HTTP plumbing shared by every call: one configuration, error bodies to typed exceptions, streams read in place.

Plain requests go through httpx. Streamed responses (variant tars, epoch batches) are megabytes per second of
payload, and there the HTTP stack is most of the client's cost: httpx reads through h11, which copies every
piece of the body three times (into its receive buffer, out of it, into ours). Python's ``http.client``
instead reads a body straight into the caller's buffer (``readinto``), so a batch is one copy from the socket
into its own array with no Python per piece (bench/results/profiles.md has the figures).

Both paths take everything from the one ``httpx.Client``: httpx builds every request (URL and base path,
default headers such as an API key, JSON, multipart), and :class:`StreamConnections` reads its host, port,
scheme and timeout from that client, so a setting made there reaches calls and streams alike. A client given
its own httpx transport (an ASGI app, a mock) streams through that transport.
"""

from __future__ import annotations

import functools
import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from .protocol.errors import ErrorCode, InternalServerError, ProtocolError, TransportError, error_from_body
from .protocol.wire import Body

# Failures worth another try (after a backoff, or on another endpoint): the server unreachable or gone, a
# stream cut short, a 5xx (503 while a replica drains included).
RETRYABLE = (TransportError, ProtocolError, InternalServerError)


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """httpx's default verifying context, built once per process and shared by every Client.

    httpx builds one in every ``httpx.Client()``, even for plain http, and loading the CA bundle is costly;
    AugmentedDataset opens a Client per DataLoader worker per epoch, and forked workers inherit this one."""
    return httpx.create_ssl_context(verify=True, cert=None, trust_env=True)


def raise_for_error(status: int, read: Any) -> None:
    """Raise the typed exception for an error status; ``read()`` returns the body (only called on an error)."""
    if status < 400:
        return
    try:
        body = json.loads(read())
    except (ValueError, OSError, http.client.HTTPException, httpx.HTTPError):
        body = {"code": ErrorCode.HTTP_ERROR.value, "message": f"HTTP {status}"}
    raise error_from_body(status, body if isinstance(body, dict) else {"message": str(body)})


class StreamConnections:
    """Keep-alive ``http.client`` connections to one server, for streamed responses; safe across threads.

    A connection goes back to the idle list only when its response was read to the end, so an abandoned stream
    never leaves unread bytes in front of the next response. A request on an idle connection that the server
    has meanwhile closed (uvicorn drops idle ones after a few seconds) is sent again once on a new one.
    """

    def __init__(self, http: httpx.Client) -> None:
        url = http.base_url
        self._https = url.scheme == "https"
        self._host = url.host
        self._port = url.port or (443 if self._https else 80)
        self._timeout = http.timeout.read
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _new(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=ssl_context())
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._new(), False

    def connect(self) -> None:
        """Open one connection now and keep it idle (to place it on a server worker before timed work)."""
        connection = self._new()
        connection.connect()
        with self._lock:
            self._idle.append(connection)

    def send(self, request: httpx.Request) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        connection, reused = self._take()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "accept-encoding"}  # no gzip here
        while True:
            try:
                connection.request(request.method, request.url.raw_path.decode(), request.read(), headers)
                return connection, connection.getresponse()
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                # ConnectionError (RemoteDisconnected included) on a reused connection: the server closed it idle.
                if not (reused and isinstance(error, ConnectionError)):
                    raise TransportError(f"{request.method} {request.url.path}: {error}") from error
                connection, reused = self._new(), False

    def release(self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse) -> None:
        if response.isclosed() and not response.will_close:
            with self._lock:
                self._idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class HttpxBody:
    """An httpx streamed response as a :class:`Body`: the path for a client given its own httpx transport."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.iter_raw()
        self._pending = memoryview(b"")

    def readinto(self, buffer: memoryview) -> int:
        while not self._pending:
            try:
                chunk = next(self._chunks, None)
            except httpx.TransportError as error:
                raise ProtocolError(f"the stream broke off: {error}") from error
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


@contextmanager
def open_stream(
    http: httpx.Client, streams: StreamConnections | None, method: str, path: str, **kwargs: Any
) -> Iterator[tuple[Body, dict[str, str]]]:
    """A streamed response whose status was checked: ``(body, headers)``; errors arrive as typed exceptions.

    ``streams`` None sends it through ``http`` (its own transport) instead of ``http.client``."""
    request = http.build_request(method, path, **kwargs)
    if streams is None:
        with _httpx_stream(http, request) as opened:
            yield opened
        return
    connection, response = streams.send(request)
    try:
        raise_for_error(response.status, response.read)
        yield response, {k.lower(): v for k, v in response.getheaders()}
    finally:
        streams.release(connection, response)


@contextmanager
def _httpx_stream(http: httpx.Client, request: httpx.Request) -> Iterator[tuple[Body, dict[str, str]]]:
    try:
        response = http.send(request, stream=True)
    except httpx.TransportError as error:
        raise TransportError(f"{request.method} {request.url.path}: {error}") from error
    try:
        raise_for_error(response.status_code, response.read)
        yield HttpxBody(response), dict(response.headers)
    finally:
        response.close()
