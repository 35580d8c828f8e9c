"""ASGI middleware: a request id for every request, one access line when its response ends, and the request
metrics (counts by route and status, durations, bytes sent).

The route is the matched path template (``/v1/datasets/{name}/epochs``), so metric labels stay few whatever
names clients send; the line also names the dataset and the key. A streamed response is logged and timed
when its last byte is sent (or the stream is cut), not when it starts.
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import metrics
from .logs import REQUEST_ID

log = logging.getLogger("augserve.access")
MAX_ID = 128  # a client's X-Request-ID longer than this is replaced, not echoed


class RequestLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if 0 < len(given) <= MAX_ID and given.isprintable() else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started, status, sent = time.monotonic(), 500, 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _record(scope, status, sent, time.monotonic() - started)
            REQUEST_ID.reset(token)


def _record(scope: Scope, status: int, sent: int, seconds: float) -> None:
    route = getattr(scope.get("route"), "path", "unmatched")
    metrics.REQUESTS.labels(route, scope["method"], str(status)).inc()
    metrics.REQUEST_SECONDS.labels(route).observe(seconds)
    metrics.SENT_BYTES.labels(route).inc(sent)
    fields = {
        "key": scope.get("state", {}).get("key"),
        "route": route,
        "dataset": scope.get("path_params", {}).get("name"),
        "status": status,
        "bytes": sent,
        "duration_s": round(seconds, 4),
    }
    log.info("%s %s %d %d bytes %.3f s", scope["method"], scope["path"], status, sent, seconds, extra=fields)
