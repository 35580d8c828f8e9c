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

Behind one address that is a load balancer, a replica that just died leaves a window (until the balancer stops
choosing it) in which the balancer itself answers 502, 503 or 504. :class:`ProxyRetryingClient` asks such a
plain call again, a bounded number of times with backoff; streams are their callers' to retry (``EpochBatches``
resumes an epoch at its next undelivered batch).
"""

from __future__ import annotations

import functools
import http.client
import json
import re
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from .protocol.errors import ErrorCode, InternalServerError, ProtocolError, TransportError, error_from_body
from .protocol.wire import Body

# Failures worth another try (after a backoff, or on another endpoint): the server unreachable or gone, a
# stream cut short, a 5xx (503 while a replica drains included).
RETRYABLE = (TransportError, ProtocolError, InternalServerError)


# What a proxy answers for a replica it could not reach or that is going away: nginx's 502 (refused, reset, "no
# live upstreams"), 504 (connect timeout), and a 503 passed on from a draining or busy replica.
PROXY_STATUSES = frozenset({502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# augserve's POSTs that have the same effect when sent twice: they compute (validate, augment, an epoch), ask
# (which blobs are missing) or store by content (blobs; a dataset: 200 when the same content is already there).
IDEMPOTENT_POSTS = re.compile(r"/v1/(specs/validate|augment|blobs|blobs/missing|datasets|datasets/[^/]+/epochs)\Z")
# Probes say how things are now; asking again until they pass would answer another question.
PROBES = frozenset({"/healthz", "/readyz", "/livez"})
RESENT = "augserve_resent"  # set in a response's extensions when its request was sent more than once


def retryable_call(method: str, path: str) -> bool:
    """Whether a call may be sent again after a proxy error: idempotent, and not a probe."""
    if any(path.endswith(probe) for probe in PROBES):
        return False
    method = method.upper()
    return method in IDEMPOTENT_METHODS or (method == "POST" and IDEMPOTENT_POSTS.search(path) is not None)


@dataclass(frozen=True)
class ProxyRetries:
    """How often and how patiently a call that got a proxy error is sent again: ``tries`` more times, waiting
    ``backoff`` seconds doubled each time up to ``max_backoff`` (longer when the answer's Retry-After says so).

    The default waits up to 23.5 s in all: past a balancer's window after a replica dies (nginx in compose:
    the 10 s until it re-resolves the replicas' names, plus its 5 s connect timeout)."""

    tries: int = 6
    backoff: float = 0.5
    max_backoff: float = 8.0

    def delay(self, attempt: int, response: httpx.Response) -> float:
        wait = self.backoff * 2**attempt
        retry_after = response.headers.get("retry-after", "")
        if retry_after.isdigit():
            wait = max(wait, float(retry_after))
        return min(self.max_backoff, wait)


class ProxyRetryingClient(httpx.Client):
    """An ``httpx.Client`` for one base URL that sends a plain call again when a proxy answers it with 502, 503
    or 504: only calls that :func:`retryable_call` allows, never a streamed response (its caller resumes it)."""

    def __init__(self, *args: Any, proxy_retries: ProxyRetries | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.proxy_retries = proxy_retries or ProxyRetries()

    def send(self, request: httpx.Request, *, stream: bool = False, **kwargs: Any) -> httpx.Response:
        if stream or not retryable_call(request.method, request.url.path):
            return super().send(request, stream=stream, **kwargs)
        request.read()  # the body is sent again as it was (an upload batch is in memory already)
        policy = self.proxy_retries
        attempt = 0
        while True:
            response = super().send(request, **kwargs)
            if attempt:
                response.extensions[RESENT] = True  # see Client.request: a DELETE's lost answer
            if response.status_code not in PROXY_STATUSES or attempt == policy.tries:
                return response
            time.sleep(policy.delay(attempt, response))
            attempt += 1


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
