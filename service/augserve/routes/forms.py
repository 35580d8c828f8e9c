"""Turning a multipart request into domain values, with every failure naming its field, file or limit.

Routes parse their own forms (rather than declaring ``File()`` parameters) so that an over-limit body or a
broken part surfaces as our error with our code, not as FastAPI's generic 400.
"""

from __future__ import annotations

import json

from augserve_client.protocol.errors import ErrorCode
from augserve_client.protocol.seeds import SEED_MAX
from augserve_client.protocol.spec import Spec
from augserve_client.protocol.targets import ImageTargets
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from ..errors import ServiceError, limit_exceeded
from ..http_errors import validation_error
from ..preflight import check_sizes, check_transforms
from ..settings import Settings
from ..variants import AugmentRequest

MAX_FIELD_BYTES = 1 << 20
TARGETS = TypeAdapter(list[ImageTargets | None])


async def read_form(request: Request, max_files: int, *, field: str, limit: str, files_each: int = 1) -> FormData:
    """The parsed multipart body. The parser stops one file past ``max_files`` (the setting ``limit``, files
    sent as ``field``; times ``files_each`` when each may come with a mask), so :func:`read_files` reports
    max_files + 1 itself and the parser anything beyond."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        got = content_type or "no content type"
        raise ServiceError(ErrorCode.INVALID_REQUEST, f"expected multipart/form-data, got {got}")
    try:
        parts = max_files * files_each + 1
        return await request.form(max_files=parts, max_fields=1000, max_part_size=MAX_FIELD_BYTES)
    except ServiceError:
        raise
    except Exception as error:  # multipart errors come in several classes across Starlette versions
        if "too many files" in str(error).lower():
            message = f"more than {max_files + 1} files sent"
            raise limit_exceeded(ErrorCode.TOO_MANY_IMAGES, limit, max_files, message, field=field) from None
        raise ServiceError(ErrorCode.INVALID_REQUEST, f"malformed multipart body: {error}") from None


async def read_augment_form(request: Request, settings: Settings) -> AugmentRequest:
    """A ``/v1/augment`` form (``images``, ``spec``, ``variants``, ``seed``, and optionally ``masks`` and
    ``targets``) as a request within the limits."""
    form = await read_form(request, settings.max_images, field="images", limit="max_images", files_each=2)
    spec = parse_spec(text_field(form, "spec"))
    check_sizes(spec, settings.max_pixels)
    variants = int_field(form, "variants", 1, minimum=1)
    seed = int_field(form, "seed", None, minimum=0, maximum=SEED_MAX)
    if variants > settings.max_variants:
        raise limit_exceeded(
            ErrorCode.TOO_MANY_VARIANTS,
            "max_variants",
            settings.max_variants,
            f"{variants} variants per image asked",
            field="variants",
        )
    files = await read_files(form, "images", settings, settings.max_images, "max_images")
    masks = None
    if form.getlist("masks"):
        masks = await read_files(form, "masks", settings, settings.max_images, "max_images")
    targets = parse_targets(text_field(form, "targets"))
    for field, given in (("masks", masks), ("targets", targets)):
        if given is not None and len(given) != len(files):
            message = f"{field} has {len(given)} entries for {len(files)} images: give one per image, in order"
            raise ServiceError(ErrorCode.INVALID_TARGETS, message, field=field)
    return AugmentRequest(spec, variants, seed, files, masks, targets)


def parse_targets(text: str | None) -> list[ImageTargets | None] | None:
    """The ``targets`` field: a JSON list with, per image, its boxes and keypoints (or null)."""
    if text is None or text == "":
        return None
    try:
        return TARGETS.validate_json(text)
    except ValidationError as error:
        raise validation_error(error, ErrorCode.INVALID_TARGETS, "targets") from None


async def read_files(
    form: FormData, field: str, settings: Settings, max_files: int, limit: str
) -> list[tuple[str, bytes]]:
    """The files under ``field`` as (name, bytes), each checked against the per-file byte limit."""
    uploads = [value for value in form.getlist(field) if isinstance(value, UploadFile)]
    if not uploads:
        raise ServiceError(ErrorCode.INVALID_REQUEST, f"no files in form field '{field}'", field=field)
    if len(uploads) > max_files:
        raise limit_exceeded(ErrorCode.TOO_MANY_IMAGES, limit, max_files, f"{len(uploads)} files sent", field=field)
    files = []
    for index, upload in enumerate(uploads):
        name = upload.filename or f"{field}[{index}]"
        if upload.size is not None and upload.size > settings.max_file_bytes:
            raise limit_exceeded(
                ErrorCode.FILE_TOO_LARGE,
                "max_file_bytes",
                settings.max_file_bytes,
                f"{name} is {upload.size} bytes",
                file=name,
            )
        files.append((name, await upload.read()))
    return files


def text_field(form: FormData, field: str) -> str | None:
    value = form.get(field)
    if value is None or isinstance(value, str):
        return value
    raise ServiceError(ErrorCode.INVALID_REQUEST, f"form field '{field}' must be text, not a file", field=field)


def int_field(
    form: FormData, field: str, default: int | None, minimum: int, maximum: int | None = None
) -> int | None:
    text = text_field(form, field)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        message = f"{field} must be an integer, got {text!r}"
        raise ServiceError(ErrorCode.INVALID_REQUEST, message, field=field) from None
    if value < minimum:
        raise ServiceError(ErrorCode.INVALID_REQUEST, f"{field} must be >= {minimum}, got {value}", field=field)
    if maximum is not None and value > maximum:
        raise ServiceError(ErrorCode.INVALID_REQUEST, f"{field} must be <= {maximum}, got {value}", field=field)
    return value


def parse_spec(text: str | bytes | None, field: str = "spec") -> Spec:
    """Validate a spec given as JSON text; errors name the path inside it, e.g. ``spec.ops[1].angle``."""
    if text is None:
        return Spec()
    try:
        spec = Spec.model_validate(json.loads(text))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ServiceError(ErrorCode.INVALID_SPEC, f"{field} is not valid JSON: {error}", field=field) from None
    except RecursionError:
        raise ServiceError(ErrorCode.INVALID_SPEC, f"{field} is nested too deeply to be a spec", field=field) from None
    except ValidationError as error:
        raise validation_error(error, ErrorCode.INVALID_SPEC, field) from None
    check_transforms(spec, field)
    return spec
