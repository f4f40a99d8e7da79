"""One JSON error shape for every 4xx/5xx: ``{"error": {"code", "message", "fields"?}}``.

A request body that cannot be validated is told apart by cause: not sent as JSON (415), not valid JSON
(400, naming the decoder's error and where it is), or JSON whose fields are wrong (422, one entry per field).
"""

from __future__ import annotations

import email.message
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from actors.payloads import pattern_problem

__all__ = ["error_response", "install_error_handlers"]

_CODES = {
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    503: "unavailable",
}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The error body every endpoint uses."""
    return JSONResponse(
        status_code=status,
        content={"error": {"code": code, "message": message, **extra}},
        headers=dict(headers) if headers else None,
    )


def _is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/<anything>+json``, parameters allowed (FastAPI's own test)."""
    if not content_type:
        return False
    header = email.message.Message()
    header["content-type"] = content_type
    subtype = header.get_content_subtype()
    return header.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def _json_error(error: Mapping[str, Any], document: Any) -> str:
    """``Expecting value at line 1, column 9``: FastAPI reports the decoder's message and a character offset."""
    reason = str(error.get("ctx", {}).get("error", "JSON decode error"))
    offset = error["loc"][-1] if isinstance(error["loc"][-1], int) else None
    if offset is None or not isinstance(document, str):
        return reason
    line = document.count("\n", 0, offset) + 1
    column = offset - (document.rfind("\n", 0, offset) + 1) + 1
    return f"{reason} at line {line}, column {column}"


def _field_problems(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    problems = []
    for error in errors:
        problem = str(error["msg"]).removeprefix("Value error, ")
        if error.get("type") == "string_pattern_mismatch":
            problem = pattern_problem(str(error.get("ctx", {}).get("pattern", "")))
        field = ".".join(str(part) for part in error["loc"] if part != "body") or "body"
        problems.append({"field": field, "problem": problem})
    return problems


def install_error_handlers(app: FastAPI) -> None:
    """415/400/422 for bodies that are not JSON, not valid JSON, or wrong; 404/405 and others in the same shape."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        content_type = request.headers.get("content-type")
        if any(error["loc"][:1] == ("body",) for error in errors) and not _is_json(content_type):
            # FastAPI hands a non-JSON body to the model as bytes: "Input should be a valid dictionary" says
            # nothing about the real mistake.
            got = f"got {content_type!r}" if content_type else "no Content-Type was sent"
            return error_response(
                415, "unsupported_media_type", f"send the body as JSON with Content-Type: application/json ({got})"
            )
        invalid = [error for error in errors if error.get("type") == "json_invalid"]
        if invalid:
            return error_response(
                400, "invalid_json", f"the body is not valid JSON: {_json_error(invalid[0], exc.body)}"
            )
        fields = _field_problems(errors)
        summary = "; ".join(f"{f['field']}: {f['problem']}" for f in fields)
        return error_response(422, "validation_error", summary, fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Keep the exception's headers: a 405 must say which methods are allowed.
        code = _CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)
