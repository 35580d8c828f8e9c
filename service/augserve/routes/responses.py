"""The streamed response every streaming route returns, and the error responses every route declares.

Starlette's ``StreamingResponse`` completes the response when its body ends, and passes on an exception from
the body to the server, which logs a traceback for it. Our bodies end a failed stream with their format's
error record and :class:`~augserve.streaming.StreamBroken`; this response then returns *without* completing:
the server closes the connection with no final chunk (or short of the Content-Length), so the failure can
never pass for a complete stream, and the log holds the failure's one line instead of a traceback.
"""

from __future__ import annotations

from typing import Any

from augserve_client.protocol.errors import ErrorCode
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import StreamingResponse
from starlette.types import Send

from ..streaming import StreamBroken


class CutOnFailureResponse(StreamingResponse):
    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        except StreamBroken:
            return


class ErrorBody(BaseModel):
    """Every error the service answers (docs/wire-format.md, "Errors"): a stable code, a message, and what it
    names. Declared on every route so the OpenAPI schema lists the errors a client must expect."""

    model_config = ConfigDict(extra="allow")

    code: ErrorCode
    message: str
    field: str | None = Field(None, description="the request field at fault, e.g. spec.ops[1].angle")
    file: str | None = Field(None, description="the uploaded file at fault")
    limit: str | None = Field(None, description="the setting whose limit was passed")
    request_id: str | None = Field(None, description="the request's X-Request-ID, also in the server's log")


WHY = {
    401: "no API key, or an unknown one (a server with a keys file)",
    403: "the key's role or ownership does not allow this; a folder outside the data root",
    404: "no such dataset, folder or route",
    409: "the name is taken by other content",
    413: "a size, pixel or count limit; `limit` names the setting",
    415: "an image format or mode the service does not decode",
    422: "a malformed request or spec, or a file that is no image; `field` or `file` names it",
    429: "a per-key limit; retry after Retry-After",
    503: "draining (shutting_down) or a memory budget in use (server_busy); retry after Retry-After",
    507: "the data directory is full; nothing partial was kept",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: these statuses, each with the error body and why it happens."""
    return {status: {"model": ErrorBody, "description": WHY[status]} for status in statuses}
