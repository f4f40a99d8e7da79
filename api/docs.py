"""``/openapi.json``, ``/docs`` (Swagger UI) and ``/redoc``, open or behind the API key.

FastAPI's own routes for these take no dependencies, so the app turns them off and these replace them.
Behind the key, a browser's Swagger UI cannot fetch the document (it sends no header): fetch it with
``curl -H "Authorization: Bearer $KEY"`` instead, or leave the docs open (the default: the document describes
the routes, which the source does too, and holds no data).
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI, params
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

__all__ = ["install_docs_routes"]


def install_docs_routes(app: FastAPI, *, dependencies: Sequence[params.Depends] = ()) -> None:
    """GET /openapi.json, /docs and /redoc, each with ``dependencies``."""

    @app.get("/openapi.json", include_in_schema=False, dependencies=list(dependencies))
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=list(dependencies))
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - Swagger UI")

    @app.get("/redoc", include_in_schema=False, dependencies=list(dependencies))
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")
