"""One JSON shape for every error: ``{"error": {"code": ..., "message": ..., "details": [...]?}}``.

Handlers map the stratkernel exception hierarchy, FastAPI's validation errors, Starlette's HTTP errors
and anything unexpected onto it. No handler ever returns a stack trace or echoes submitted values
(which may be passwords); unexpected exceptions are logged server-side and answered with a bare 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..core.errors import AuthError, ConfigError, StoreError, ValidationError
from .auth import Forbidden
from .limits import RateLimited

log = logging.getLogger("stratkernel.api")

STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class BodyTooLarge(StarletteHTTPException):
    """Raised while reading a request body that exceeds the configured limit.

    A Starlette HTTPException so FastAPI's body parsing re-raises it as is instead of turning it into
    a generic 400.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code or STATUS_CODES.get(status, "error"), "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _validation_details(errors: list[Any]) -> list[dict[str, Any]]:
    # loc, msg and type only: 'input' and 'ctx' can contain the submitted password.
    return [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]


async def _on_request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "request validation failed", details=_validation_details(list(exc.errors())))


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else STATUS_CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, message, headers=dict(exc.headers or {}))


async def _on_auth(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, Forbidden):
        return error_response(403, str(exc))
    return error_response(401, str(exc), headers={"WWW-Authenticate": "Bearer"})


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError)
    return error_response(
        422,
        str(exc),
        code="invalid_value",
        details=[{"loc": [exc.field], "msg": exc.reason, "type": "invalid"}],
    )


async def _on_rate_limited(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RateLimited)
    return error_response(429, str(exc), headers=exc.headers())


async def _on_store(request: Request, exc: Exception) -> JSONResponse:
    log.error("store unavailable: %s", exc)
    return error_response(503, "the store is unavailable; try again later")


async def _on_config(request: Request, exc: Exception) -> JSONResponse:
    # While serving a request, a ConfigError comes from a setting the caller sent (strategy params,
    # risk limits): the server's own configuration is checked at startup, before any request.
    assert isinstance(exc, ConfigError)
    return error_response(
        422,
        str(exc),
        code="invalid_value",
        details=[{"loc": [exc.field], "msg": str(exc), "type": "invalid"}],
    )


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(AuthError, _on_auth)
    app.add_exception_handler(ValidationError, _on_validation)
    app.add_exception_handler(RateLimited, _on_rate_limited)
    app.add_exception_handler(StoreError, _on_store)
    app.add_exception_handler(ConfigError, _on_config)
    app.add_exception_handler(Exception, on_unexpected)
