"""One JSON error shape for every 4xx/5xx: ``{"error": {"code", "message", "fields"?}}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["error_response", "install_error_handlers"]

_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 503: "unavailable"}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The error body every endpoint uses."""
    return JSONResponse(
        status_code=status,
        content={"error": {"code": code, "message": message, **extra}},
        headers=dict(headers) if headers else None,
    )


def install_error_handlers(app: FastAPI) -> None:
    """422 naming each bad field; 404/405 and other HTTP errors in the same shape."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {
                "field": ".".join(str(part) for part in error["loc"] if part != "body") or "body",
                "problem": str(error["msg"]).removeprefix("Value error, "),
            }
            for error in exc.errors()
        ]
        summary = "; ".join(f"{f['field']}: {f['problem']}" for f in fields)
        return error_response(422, "validation_error", summary, fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Keep the exception's headers: a 405 must say which methods are allowed.
        code = _CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)
