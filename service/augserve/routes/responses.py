"""The streamed response every streaming route returns.

Starlette's ``StreamingResponse`` completes the response when its body ends, and passes on an exception from
the body to the server, which logs a traceback for it. Our bodies end a failed stream with their format's
error record and :class:`~augserve.streaming.StreamBroken`; this response then returns *without* completing:
the server closes the connection with no final chunk (or short of the Content-Length), so the failure can
never pass for a complete stream, and the log holds the failure's one line instead of a traceback.
"""

from __future__ import annotations

from starlette.responses import StreamingResponse
from starlette.types import Send

from ..streaming import StreamBroken


class CutOnFailureResponse(StreamingResponse):
    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        except StreamBroken:
            return
