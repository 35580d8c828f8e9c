"""Domain errors of the service: raised by the engine, codecs and stores, turned into JSON in one place.

They carry a stable :class:`~augserve_client.protocol.errors.ErrorCode` (shared with the client) and the offending
field, file or limit, never an HTTP exception: the HTTP mapping lives in :mod:`augserve.http_errors`.
"""

from __future__ import annotations

from typing import Any

from augserve_client.protocol.errors import ErrorCode

from .logs import with_request_id


class ServiceError(Exception):
    """A failure with a stable code and the details a caller needs to fix the request."""

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = {key: value for key, value in details.items() if value is not None}

    def body(self) -> dict[str, Any]:
        return {"code": self.code.value, "message": self.message, **self.details}


def limit_exceeded(code: ErrorCode, limit: str, value: int, message: str, **details: Any) -> ServiceError:
    """An error for a configured limit; ``limit`` is the setting's name so operators know what to raise."""
    return ServiceError(code, f"{message} (limit {limit}={value})", limit=limit, limit_value=value, **details)


def stream_error_body(error: Exception) -> dict[str, Any]:
    """The body written into a stream that fails after it started (the status line is already sent)."""
    body = error.body() if isinstance(error, ServiceError) else {
        "code": ErrorCode.INTERNAL.value,
        "message": f"the stream failed after it started: {error}",
    }
    return with_request_id(body)
