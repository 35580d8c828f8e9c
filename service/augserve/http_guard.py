"""uvicorn's HTTP protocol with the limits it lacks: header size, header time, body rate.

uvicorn (httptools) accepts request headers of any size, waits for them forever, and waits forever for a body
trickling in: 16 connections sending 47 MB of headers cost 768 MB; 300 slowloris connections and 50 uploads
at 100 B/s all stayed open. This protocol answers, then closes the connection:

- 431 when a request's line and headers pass ``max_header_bytes`` (counted as they arrive, so nothing
  larger is ever held);
- 408 when a request's headers are not complete ``header_timeout`` seconds after the connection opened or
  the request began;
- 408 when a body arrives slower than ``body_min_rate`` bytes per second, judged once ``body_grace_seconds``
  have passed since the headers;
- 400 when the parser cannot read the request (uvicorn's own answer, in JSON like every other refusal).

It is passed to uvicorn by :func:`augserve.__main__.run_server`, and reads its limits from the settings once.
"""

from __future__ import annotations

import asyncio
import json
import time
from functools import cache
from typing import Any

from augserve_client.protocol.errors import ErrorCode
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .settings import Settings

CHECK_SECONDS = 1.0
REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}


@cache
def _limits() -> Settings:
    return Settings()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused = False
        self._header_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._body_started = 0.0
        self._body_bytes: int | None = None  # None: no body being received

    # --- the request's head --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait_for_headers()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._wait_for_headers()

    def on_url(self, url: bytes) -> None:
        if self._counted(len(url)):
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._counted(len(name) + len(value)):
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._cancel_timer()
        self._body_started, self._body_bytes = time.monotonic(), 0
        self._timer = self.loop.call_later(CHECK_SECONDS, self._check_body_rate)
        super().on_headers_complete()

    # --- the body --------------------------------------------------------------------------------------

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        if self._body_bytes is not None:
            self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._cancel_timer()
        self._body_bytes = None
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    # --- the limits ------------------------------------------------------------------------------------

    def _counted(self, size: int) -> bool:
        self._header_bytes += size
        limit = _limits().max_header_bytes
        if self._header_bytes > limit and not self._refused:
            self._refuse(431, f"request line and headers over {limit} bytes (limit max_header_bytes)")
        return not self._refused

    def _wait_for_headers(self) -> None:
        self._cancel_timer()
        seconds = _limits().header_timeout
        self._timer = self.loop.call_later(seconds, self._refuse, 408, f"headers not complete in {seconds:g} s")

    def _check_body_rate(self) -> None:
        if self._refused or self._body_bytes is None:
            return
        limits = _limits()
        if self.flow.read_paused:  # the server is not reading (its app is behind): not the client's delay
            self._body_started += CHECK_SECONDS
        elapsed = time.monotonic() - self._body_started
        if elapsed > limits.body_grace_seconds and self._body_bytes < limits.body_min_rate * elapsed:
            rate = self._body_bytes / elapsed
            self._refuse(408, f"body arriving at {rate:.0f} B/s, under {limits.body_min_rate} (limit body_min_rate)")
            return
        self._timer = self.loop.call_later(CHECK_SECONDS, self._check_body_rate)

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` if no response has started, then close; nothing more of the request is read."""
        self._refused = True
        self._cancel_timer()
        self.logger.warning("closing a connection from %s: %s", self.client, message)
        self._answer_and_close(status, message)

    def send_400_response(self, msg: str) -> None:
        """A request the parser cannot read (a bad request line, header or chunk, a duplicate Content-Length):
        uvicorn answers in plain text; every other refusal of ours is JSON, so this one is too."""
        self._refused = True
        self._cancel_timer()
        self._answer_and_close(400, f"{msg} (bad request line, header, chunk or Content-Length)")

    def _answer_and_close(self, status: int, message: str) -> None:
        if (self.cycle is None or not self.cycle.response_started) and not self.transport.is_closing():
            body = json.dumps({"code": ErrorCode.HTTP_ERROR.value, "message": message}).encode()
            head = f"HTTP/1.1 {status} {REASONS[status]}\r\ncontent-type: application/json\r\n"
            head += f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            self.transport.write(head.encode() + body)
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
