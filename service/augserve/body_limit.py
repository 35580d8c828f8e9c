"""A guard on request bodies, applied before any route parses a byte.

A declared ``Content-Length`` over the limit is refused at once with 413; a body sent without one (chunked)
is counted as it arrives and the parser fails with the same error the moment it crosses the limit.
"""

from __future__ import annotations

from augserve_client.protocol.errors import ErrorCode
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import limit_exceeded


class BodyLimit:
    """ASGI middleware refusing request bodies larger than ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self, size: str):
        return limit_exceeded(
            ErrorCode.REQUEST_TOO_LARGE, "max_request_bytes", self.max_bytes, f"the request body is {size} bytes"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            error = self._error(declared.decode())
            await JSONResponse(error.body(), status_code=error.code.status)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise self._error(f"more than {self.max_bytes}")
            return message

        await self.app(scope, counted, send)
