"""augserve_client: the thin Python client of augserve. The contract it shares with the server is in ``protocol``."""

from .client import AugmentedImage, AugmentStream, Client
from .protocol.errors import (
    AugserveError,
    ConflictError,
    ErrorCode,
    InternalServerError,
    InvalidImageError,
    InvalidRequestError,
    LimitExceededError,
    NotFoundError,
    ProtocolError,
    ServerError,
    TransportError,
)
from .protocol.seeds import derive_seed
from .protocol.spec import Crop, Output, Reflect, Rotate, Shift, Spec

__all__ = [
    "AugmentStream",
    "AugmentedImage",
    "AugserveError",
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
    "ProtocolError",
    "Reflect",
    "Rotate",
    "ServerError",
    "Shift",
    "Spec",
    "TransportError",
    "derive_seed",
]
