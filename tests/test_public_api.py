"""The client package's public surface: exactly these names, each importable, and its error tree.

(That importing it pulls in nothing heavy is tests/test_thin_client.py.)
"""

from __future__ import annotations

import augserve_client

PUBLIC = {
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
}


def test_all_is_exactly_the_public_names() -> None:
    assert set(augserve_client.__all__) == PUBLIC
    assert len(augserve_client.__all__) == len(PUBLIC)  # no duplicates
    assert augserve_client.__all__ == sorted(augserve_client.__all__)


def test_every_public_name_is_importable_from_the_package() -> None:
    namespace: dict[str, object] = {}
    exec("from augserve_client import *", namespace)
    assert set(namespace) - {"__builtins__"} == PUBLIC
    for name in PUBLIC:
        assert getattr(augserve_client, name) is namespace[name]


def test_the_exception_tree_can_be_caught_at_any_level() -> None:
    from augserve_client import (
        AugserveError,
        ConflictError,
        InternalServerError,
        InvalidImageError,
        InvalidRequestError,
        LimitExceededError,
        NotFoundError,
        ProtocolError,
        ServerError,
        TransportError,
    )

    assert issubclass(TransportError, AugserveError) and issubclass(ProtocolError, AugserveError)
    for leaf in (InvalidRequestError, InvalidImageError, LimitExceededError, NotFoundError, ConflictError):
        assert issubclass(leaf, ServerError) and issubclass(leaf, AugserveError)
    assert issubclass(InternalServerError, ServerError)


def test_every_error_code_maps_to_its_exception_and_status() -> None:
    from augserve_client import ErrorCode, InternalServerError, InvalidImageError, LimitExceededError, NotFoundError
    from augserve_client.protocol.errors import (
        AuthenticationError,
        ConflictError,
        InvalidRequestError,
        PermissionDeniedError,
        RateLimitedError,
        error_from_body,
    )

    expected = {
        "empty_file": (422, InvalidImageError),
        "not_an_image": (422, InvalidImageError),
        "corrupt_image": (422, InvalidImageError),
        "unsupported_format": (415, InvalidImageError),
        "unsupported_mode": (415, InvalidImageError),
        "request_too_large": (413, LimitExceededError),
        "file_too_large": (413, LimitExceededError),
        "image_too_large": (413, LimitExceededError),
        "too_many_images": (413, LimitExceededError),
        "too_many_variants": (422, LimitExceededError),
        "batch_too_large": (422, LimitExceededError),
        "invalid_spec": (422, InvalidRequestError),
        "invalid_request": (422, InvalidRequestError),
        "crop_too_large": (422, InvalidRequestError),
        "mixed_shapes": (422, InvalidRequestError),
        "not_found": (404, NotFoundError),
        "path_outside_root": (403, InvalidRequestError),
        "conflict": (409, ConflictError),
        "unauthorized": (401, AuthenticationError),
        "forbidden": (403, PermissionDeniedError),
        "too_many_requests": (429, RateLimitedError),
        "method_not_allowed": (405, InvalidRequestError),
        "http_error": (400, InvalidRequestError),
        "shutting_down": (503, InternalServerError),
        "server_busy": (503, InternalServerError),
        "insufficient_storage": (507, InternalServerError),
        "client_closed": (499, InvalidRequestError),
        "invalid_targets": (422, InvalidRequestError),
        "internal": (500, InternalServerError),
    }
    assert {code.value for code in ErrorCode} == set(expected)
    for code in ErrorCode:
        status, cls = expected[code.value]
        assert code.status == status
        error = error_from_body(status, {"code": code.value, "message": "m", "field": "f", "file": "x", "limit": "l"})
        assert type(error) is cls
        assert (error.status, error.code, error.message, error.field, error.file, error.limit) == (
            status,
            code.value,
            "m",
            "f",
            "x",
            "l",
        )
