"""Error codes shared by server and client, and the exceptions the client raises for them.

Every error body the server sends is ``{"code": ..., "message": ..., "field": ..., "file": ...}``. The code
is stable; the client turns it back into one of these exceptions, so callers can catch at any level::

    AugserveError
     +-- TransportError            the server could not be reached, or the connection broke
     +-- ProtocolError             a stream ended early or was malformed (never a silently short result)
     +-- ReplicaMismatchError      two endpoints of one client serve different datasets under one name
     +-- ServerError               the server answered with an error body
          +-- InvalidRequestError  a malformed request or spec (422)
          +-- InvalidImageError    an upload that is empty, truncated, not an image, or unsupported (415/422)
          +-- LimitExceededError   a size, pixel or count limit (413/422); ``limit`` names it
          +-- NotFoundError        an unknown dataset or resource (404)
          +-- ConflictError        the request conflicts with stored state (409)
          +-- AuthenticationError  no API key, or an unknown one (401)
          +-- PermissionDeniedError  the key's role or ownership does not allow it (403)
          +-- RateLimitedError     a per-key limit (429); ``retry_after`` says when to try again
          +-- InternalServerError  the server failed or is shutting down (5xx); safe to retry
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from .spec import OPS


class ErrorCode(str, Enum):
    """Stable error codes and the HTTP status each one travels with."""

    INVALID_SPEC = "invalid_spec"
    INVALID_REQUEST = "invalid_request"
    INVALID_TARGETS = "invalid_targets"  # a mask, box or keypoint that does not fit its image; field names it
    EMPTY_FILE = "empty_file"
    NOT_AN_IMAGE = "not_an_image"
    CORRUPT_IMAGE = "corrupt_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    UNSUPPORTED_MODE = "unsupported_mode"
    CROP_TOO_LARGE = "crop_too_large"
    MIXED_SHAPES = "mixed_shapes"
    REQUEST_TOO_LARGE = "request_too_large"
    FILE_TOO_LARGE = "file_too_large"
    IMAGE_TOO_LARGE = "image_too_large"
    TOO_MANY_IMAGES = "too_many_images"
    TOO_MANY_VARIANTS = "too_many_variants"
    BATCH_TOO_LARGE = "batch_too_large"
    NOT_FOUND = "not_found"
    PATH_OUTSIDE_ROOT = "path_outside_root"
    CONFLICT = "conflict"
    UNAUTHORIZED = "unauthorized"  # no API key, or an unknown one
    FORBIDDEN = "forbidden"  # a key whose role, or ownership, does not allow this
    TOO_MANY_REQUESTS = "too_many_requests"  # a per-key limit: retry after Retry-After
    METHOD_NOT_ALLOWED = "method_not_allowed"
    HTTP_ERROR = "http_error"  # any other HTTP-level refusal; it travels with its own status
    SHUTTING_DOWN = "shutting_down"  # the replica is draining: retry elsewhere, or here after Retry-After
    INSUFFICIENT_STORAGE = "insufficient_storage"  # the data dir is full; nothing partial was kept
    SERVER_BUSY = "server_busy"  # a budget is in use by other requests: retry after Retry-After
    CLIENT_CLOSED = "client_closed"  # the client left before its answer (logged; nobody reads it)
    INTERNAL = "internal"

    @property
    def status(self) -> int:
        return _STATUS.get(self, 422)


_STATUS = {
    ErrorCode.UNSUPPORTED_FORMAT: 415,
    ErrorCode.UNSUPPORTED_MODE: 415,
    ErrorCode.REQUEST_TOO_LARGE: 413,
    ErrorCode.FILE_TOO_LARGE: 413,
    ErrorCode.IMAGE_TOO_LARGE: 413,
    ErrorCode.TOO_MANY_IMAGES: 413,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.PATH_OUTSIDE_ROOT: 403,
    ErrorCode.CONFLICT: 409,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.TOO_MANY_REQUESTS: 429,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.HTTP_ERROR: 400,
    ErrorCode.SHUTTING_DOWN: 503,
    ErrorCode.INSUFFICIENT_STORAGE: 507,
    ErrorCode.SERVER_BUSY: 503,
    ErrorCode.CLIENT_CLOSED: 499,
    ErrorCode.INTERNAL: 500,
}


class AugserveError(Exception):
    """Base of everything the client raises."""


class TransportError(AugserveError):
    """The server could not be reached or the connection broke; retrying may help."""


class ReplicaMismatchError(AugserveError):
    """Two servers of one client's endpoint list serve different content under one dataset name."""


class ProtocolError(AugserveError):
    """The response stream was cut short or malformed."""


class ServerError(AugserveError):
    """The server answered with an error body."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.field: str | None = details.get("field")
        self.file: str | None = details.get("file")
        self.limit: str | None = details.get("limit")


class InvalidRequestError(ServerError):
    """The request or its spec is malformed; ``field`` names the culprit."""


class InvalidImageError(ServerError):
    """An uploaded file cannot be used as an image; ``file`` names it."""


class LimitExceededError(ServerError):
    """A configured limit was hit; ``limit`` names the setting."""


class NotFoundError(ServerError):
    """The named dataset or resource does not exist."""


class ConflictError(ServerError):
    """The request conflicts with what the server has stored."""


class AuthenticationError(ServerError):
    """The server needs an API key (``Client(api_key=...)`` or ``AUGSERVE_API_KEY``), or did not know this one."""


class PermissionDeniedError(ServerError):
    """The key's role, or the dataset's ownership, does not allow the request."""


class RateLimitedError(ServerError):
    """A per-key limit was reached; ``retry_after`` is the seconds to wait before trying again."""

    @property
    def retry_after(self) -> float:
        return float(self.details.get("retry_after", 1))


class InternalServerError(ServerError):
    """The server failed; the request may be retried."""


_IMAGE_CODES = {"empty_file", "not_an_image", "corrupt_image", "unsupported_format", "unsupported_mode"}
_LIMIT_CODES = {
    "request_too_large",
    "file_too_large",
    "image_too_large",
    "too_many_images",
    "too_many_variants",
    "batch_too_large",
}


_ACCESS_CODES: dict[str, type[ServerError]] = {
    "unauthorized": AuthenticationError,
    "forbidden": PermissionDeniedError,
    "too_many_requests": RateLimitedError,
}


def error_class(status: int, code: str) -> type[ServerError]:
    """The exception class for an error body's code (falling back on the status)."""
    if code in _IMAGE_CODES:
        return InvalidImageError
    if code in _LIMIT_CODES:
        return LimitExceededError
    if code == "not_found" or status == 404:
        return NotFoundError
    if code == "conflict" or status == 409:
        return ConflictError
    if code in _ACCESS_CODES:
        return _ACCESS_CODES[code]
    if status >= 500:
        return InternalServerError
    return InvalidRequestError


def stream_error(body: dict[str, Any]) -> ServerError:
    """The typed exception of an error record written into a stream after its 200 was sent. Such a record has
    no status of its own: its code says what the status would have been (500 for a code this client does not
    know), so a file that broke is InvalidImageError, not a retryable InternalServerError."""
    try:
        status = ErrorCode(str(body.get("code"))).status
    except ValueError:
        status = 500
    return error_from_body(status, body)


def error_from_body(status: int, body: dict[str, Any]) -> ServerError:
    """Rebuild the typed exception from an error body the server sent."""
    code = str(body.get("code", "unknown"))
    message = str(body.get("message", body))
    details = {k: v for k, v in body.items() if k not in ("code", "message")}
    return error_class(status, code)(status, code, message, **details)


def field_path(loc: tuple[Any, ...], prefix: str = "") -> str:
    """``("ops", 1, "rotate", "angle")`` -> ``"ops[1].angle"``: how an error body's ``field`` names a place in a
    request (a pydantic error's location; the union's tag is noise to a reader). Server and command line both
    name fields this way."""
    path = prefix
    for index, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        elif not str(part).isidentifier():
            continue  # a union member's tag, e.g. "constrained-int" or "tuple[constrained-int, ...]"
        elif not (index and isinstance(loc[index - 1], int) and part in OPS):
            path += f".{part}" if path else str(part)
    return path
