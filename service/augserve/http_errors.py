"""The one place where failures become HTTP responses: ``{"code", "message", "field"?, "file"?, "limit"?}``.

Routes and domain code raise :class:`~augserve.errors.ServiceError`; nothing else builds error responses.
"""

from __future__ import annotations

import logging

from augserve_client.protocol.errors import ErrorCode, field_path
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from .errors import ServiceError
from .logs import with_request_id

log = logging.getLogger("augserve.errors")
# Starlette's own refusals (an unknown route, a wrong method, a body FastAPI cannot parse) by status.
HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}


def validation_error(error: ValidationError, code: ErrorCode, prefix: str) -> ServiceError:
    """A pydantic error as a ServiceError naming the first bad field and listing them all."""
    problems = [{"field": field_path(e["loc"], prefix), "message": e["msg"]} for e in error.errors()]
    first = problems[0]
    return ServiceError(code, f"{first['field']}: {first['message']}", field=first["field"], errors=problems)


def _respond(error: ServiceError) -> JSONResponse:
    headers = {}
    if error.details.get("retry_after") is not None:
        headers["Retry-After"] = str(error.details["retry_after"])
    if error.code is ErrorCode.UNAUTHORIZED:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(with_request_id(error.body()), status_code=error.code.status, headers=headers or None)


async def _service_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ServiceError)
    return _respond(error)


async def _request_validation(_: Request, error: Exception) -> JSONResponse:
    """FastAPI's body validation, in our shape; a problem inside the embedded spec is ``invalid_spec``."""
    assert isinstance(error, RequestValidationError)
    broken = next((e for e in error.errors() if e["type"] == "json_invalid"), None)
    if broken is not None:  # its location is a character position, not a field
        message = f"the body is not valid JSON (at character {broken['loc'][-1]}: {broken['ctx']['error']})"
        return _respond(ServiceError(ErrorCode.INVALID_REQUEST, message))
    problems = [{"field": field_path(e["loc"][1:], ""), "message": e["msg"]} for e in error.errors()]
    first = problems[0] if problems else {"field": None, "message": "invalid request"}
    field = first["field"] or ""
    in_spec = field == "spec" or field.startswith(("spec.", "spec["))
    code = ErrorCode.INVALID_SPEC if in_spec else ErrorCode.INVALID_REQUEST
    return _respond(ServiceError(code, f"{field}: {first['message']}", field=first["field"], errors=problems))


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    if isinstance(error.__cause__, ServiceError):  # FastAPI turns what BodyLimit raises mid-JSON-body into a 400
        return _respond(error.__cause__)
    if error.status_code == 400 and isinstance(error.__cause__, ValueError | RecursionError):
        return _respond(ServiceError(ErrorCode.INVALID_REQUEST, _unreadable_json(error.__cause__)))
    code = HTTP_CODES.get(error.status_code, ErrorCode.HTTP_ERROR)
    body = with_request_id({"code": code.value, "message": str(error.detail)})
    headers = dict(getattr(error, "headers", None) or {})
    if error.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return JSONResponse(body, status_code=error.status_code, headers=headers or None)


def _allowed_methods(request: Request) -> str:
    """Every method served at the request's path: Starlette's 405 names only the first route that matched the
    path, and ``GET /v1/datasets`` and ``POST /v1/datasets`` are two routes."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if getattr(route, "methods", None) and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    return ", ".join(sorted(methods))


def _unreadable_json(cause: Exception) -> str:
    """What stopped FastAPI reading a JSON body that parsers do not call malformed (it answers only 400)."""
    if isinstance(cause, RecursionError):
        return "the JSON body is nested too deeply"
    return f"the body could not be read as JSON: {cause}"  # not UTF-8; an integer of thousands of digits


async def _client_gone(request: Request, _: Exception) -> JSONResponse:
    """The connection ended while its body was read: the client left, or the protocol cut a body it could not
    parse (a bad chunk) and has answered 400 already. Nobody reads this answer; one log line, no traceback."""
    log.info("%s %s: the client's connection ended before its body did", request.method, request.url.path)
    return _respond(ServiceError(ErrorCode.CLIENT_CLOSED, "the connection ended before the request's body did"))


async def _unexpected(_: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=error)
    body = with_request_id({"code": ErrorCode.INTERNAL.value, "message": "internal error; see the server log"})
    return JSONResponse(body, status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
