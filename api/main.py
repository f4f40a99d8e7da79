"""The ASGI entry point: ``uvicorn api.main:app`` (``make api``). Wires the app to the actors' broker.

With authentication on (the default) and no key configured, importing this module exits with a message
naming the variables to set: an API nobody configured is never silently open.
"""

from __future__ import annotations

import sys

import actors
from actors import bootstrap
from actors.broker import broker, settings
from api.access_log import route_uvicorn_logs
from api.app import create_app
from api.auth import ApiKeys, NoApiKeys
from api.health import Checks
from observability.sdk import render_prometheus
from services.schema import schema_status
from worker_health.readiness import broker_reachable

__all__ = ["app"]


def _broker_reachable() -> None:
    broker_reachable(settings.broker_url, timeout=2.0)


def _database_at_head() -> None:
    # Reaches the database and reads its revision: SchemaBehind until `python -m actors.db upgrade` ran.
    with bootstrap.dependencies().session_factory() as session:
        schema_status(session.connection()).require_current()


def _render_metrics() -> bytes:
    # With OTEL_METRICS_EXPORTER=prometheus (``make api`` sets it) the OTel metrics land in this registry.
    return render_prometheus()


def _api_keys() -> ApiKeys:
    if not settings.api_auth:
        return ApiKeys.disabled()
    try:
        return ApiKeys(digests=settings.api_key_digests)
    except NoApiKeys as exc:
        # uvicorn reports an import error as a traceback; this says what to do in one line, and exits 1.
        sys.exit(f"tracedq API refuses to start: {exc}")


# uvicorn set up its own log handlers before importing this module; importing ``actors`` set up ours.
route_uvicorn_logs()

app = create_app(
    broker=broker,
    actors={
        "orders": actors.place_order,
        "users": actors.register_user,
        "catalog": actors.catalog.refresh_catalog_cache,
    },
    jaeger_url=settings.jaeger_url,
    max_body_bytes=settings.api_max_body_bytes,
    api_keys=_api_keys(),
    uow=lambda: bootstrap.dependencies().uow(),
    metrics_public=settings.api_metrics_public,
    docs_public=settings.api_docs_public,
    checks=Checks(probes={"broker": _broker_reachable, "database": _database_at_head}, render_metrics=_render_metrics),
)
