"""HTTP errors: every ragworks error type maps to a status, and every error body has one shape.

    {"error": {"type": "collection_not_found", "message": "no collection 'x' ..."}}

The same shape as OpenAI's API, so OpenAI clients surface the message.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragworks.errors import (
    CollectionLocked,
    CollectionNotFound,
    ConfigError,
    DocumentNotFound,
    EmbedderMismatch,
    EmbeddingError,
    InvalidName,
    InvalidReaders,
    JobNotFound,
    LLMError,
    LLMUnavailable,
    LoadError,
    QueueUnavailable,
    RagworksError,
)

log = logging.getLogger("ragworks.server")


class ApiError(RagworksError):
    """An error raised by the server itself, with its status and a machine-readable type."""

    status: int = 400
    type: str = "invalid_request"

    def __init__(self, message: str, *, status: int | None = None, type: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.headers = headers or {}


class NotFound(ApiError):
    status, type = 404, "not_found"


class Unauthorized(ApiError):
    status, type = 401, "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    status, type = 403, "forbidden"


class RateLimited(ApiError):
    status, type = 429, "rate_limited"


class RequestTimeout(ApiError):
    status, type = 504, "timeout"


class PayloadTooLarge(ApiError):
    status, type = 413, "payload_too_large"


class ServiceUnavailable(ApiError):
    status, type = 503, "unavailable"


# Most specific first: LoadError subclasses before LoadError, everything before RagworksError.
_STATUS: list[tuple[type[RagworksError], int]] = [
    (CollectionNotFound, 404),
    (JobNotFound, 404),
    (InvalidName, 400),
    (InvalidReaders, 422),
    (QueueUnavailable, 503),
    (DocumentNotFound, 404),
    (LoadError, 422),
    (ConfigError, 400),
    (EmbedderMismatch, 409),
    (CollectionLocked, 423),  # WebDAV's "Locked": retry when the writer finishes
    (LLMUnavailable, 503),
    (LLMError, 502),
    (EmbeddingError, 502),
]


def status_for(exc: RagworksError) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def type_for(exc: RagworksError) -> str:
    if isinstance(exc, ApiError):
        return exc.type
    if isinstance(exc, InvalidName | QueueUnavailable):  # the types these had as ApiErrors
        return "invalid_request" if isinstance(exc, InvalidName) else "unavailable"
    # CollectionNotFound → collection_not_found
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def error_body(type_: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message, **extra}}


def error_response(exc: RagworksError) -> JSONResponse:
    headers = exc.headers if isinstance(exc, ApiError) else {}
    if isinstance(exc, CollectionLocked):
        headers = {"Retry-After": "5"}
    return JSONResponse(error_body(type_for(exc), str(exc)), status_code=status_for(exc), headers=headers)


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for e in errors[:5]:
        loc_parts = list(e.get("loc", ()))
        if loc_parts and loc_parts[0] in ("body", "query", "path", "header", "form"):
            loc_parts = loc_parts[1:]
        loc = ".".join(str(x) for x in loc_parts)
        parts.append(f"{loc or 'request'}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Map ragworks errors, HTTP errors and validation errors to JSON; anything else is a logged 500."""

    @app.exception_handler(RagworksError)
    async def _ragworks(request: Request, exc: RagworksError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse(error_body("invalid_request", _validation_message(errors), details=errors),
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(kind, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "internal server error (see the server log)"),
                            status_code=500)
