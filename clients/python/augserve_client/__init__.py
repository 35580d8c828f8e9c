"""augserve_client: the thin Python client of augserve, and the contract (spec, seeds, wire format, errors)."""

from .client import AugmentedImage, AugmentStream, Client
from .errors import (
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
from .seeds import derive_seed
from .spec import Crop, Output, Reflect, Rotate, Shift, Spec

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
