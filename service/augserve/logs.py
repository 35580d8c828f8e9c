"""Log lines an operator can follow: each carries the id of the request it belongs to, as text or as JSON.

The request id comes from the client's ``X-Request-ID`` (nginx sets one) or is made up; it is echoed in the
response, written into every error body, and added to every log record made while the request is handled
(:data:`REQUEST_ID` is a context variable, so streams and tasks of the request see it too).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("augserve_request_id", default=None)
FIELDS = ("request_id", "key", "route", "dataset", "status", "bytes", "duration_s")  # what access lines carry


def with_request_id(body: dict[str, Any]) -> dict[str, Any]:
    """An error body with the id of the request it answers, so that a user's report points at the log lines."""
    request_id = REQUEST_ID.get()
    return {**body, "request_id": request_id} if request_id else body


class _WithRequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the request's fields when there are any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({field: getattr(record, field) for field in FIELDS if getattr(record, field, None) is not None})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str, fmt: str) -> None:
    """Send the ``augserve`` loggers to stderr, as text or JSON (once per process)."""
    logger = logging.getLogger("augserve")
    logger.setLevel(level.upper())
    if any(getattr(handler, "augserve", False) for handler in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.augserve = True  # type: ignore[attr-defined]
    handler.addFilter(_WithRequestId())
    text = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(text))
    logger.addHandler(handler)
    logger.propagate = False
