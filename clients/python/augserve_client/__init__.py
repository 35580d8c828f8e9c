"""augserve_client: the thin Python client of augserve. The contract it shares with the server is in ``protocol``.

The HTTP client (``Client`` and what it returns) is imported on first use: it loads httpx, and the server,
which imports ``augserve_client.protocol`` (and so this package), never needs an HTTP library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .protocol.errors import (
    AugserveError,
    AuthenticationError,
    ConflictError,
    ErrorCode,
    InternalServerError,
    InvalidImageError,
    InvalidRequestError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    ReplicaMismatchError,
    ServerError,
    TransportError,
)
from .protocol.seeds import derive_seed
from .protocol.spec import Crop, Output, Reflect, Rotate, Shift, Spec

if TYPE_CHECKING:
    from .client import AugmentedImage, AugmentStream, Client

_FROM_CLIENT = {"AugmentStream", "AugmentedImage", "Client"}

__all__ = [
    "AugmentStream",
    "AugmentedImage",
    "AugserveError",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "Crop",
    "ErrorCode",
    "InternalServerError",
    "InvalidImageError",
    "InvalidRequestError",
    "LimitExceededError",
    "NotFoundError",
    "Output",
    "PermissionDeniedError",
    "ProtocolError",
    "RateLimitedError",
    "Reflect",
    "ReplicaMismatchError",
    "Rotate",
    "ServerError",
    "Shift",
    "Spec",
    "TransportError",
    "derive_seed",
]


def __getattr__(name: str) -> Any:
    if name in _FROM_CLIENT:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
