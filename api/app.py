"""The producer HTTP API: validate with the actors' payload models, send, answer 202 with the trace.

Routes are thin: no business logic, one ``broker.enqueue`` each. The broker publishes with RabbitMQ
confirms, so a 202 means RabbitMQ has the message; when it cannot be reached the answer is 503 and the
next request reconnects by itself (Dramatiq drops a broken connection and opens a new one).

Every route but the health ones wants an API key (api/auth.py); ``/metrics`` and the OpenAPI document and
its pages are open or behind the key as the caller says. Orders are queued once per order id (api/orders.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import dramatiq
from dramatiq.errors import BrokerConnectionError
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.metrics import MeterProvider

from actors.payloads import Payload, RegisterUser
from api.accepted import Accepted, accepted_response
from api.auth import UNAUTHORIZED, ApiKeys
from api.docs import install_docs_routes
from api.errors import error_response, install_error_handlers
from api.health import Checks, install_health_routes
from api.limits import BodySizeLimit
from api.orders import install_order_routes
from observability.flushing import flush_telemetry
from services.unit_of_work import SqlUnitOfWork

__all__ = ["Accepted", "create_app"]


@asynccontextmanager
async def _flush_on_shutdown(app: FastAPI) -> AsyncIterator[None]:
    yield
    # uvicorn re-raises SIGTERM after this runs, so the SDK's atexit flush never would: spans of the last
    # requests before a deploy would be lost.
    flush_telemetry()


def create_app(
    *,
    broker: dramatiq.Broker,
    actors: dict[str, dramatiq.Actor[Any, Any]],
    jaeger_url: str,
    max_body_bytes: int,
    checks: Checks,
    api_keys: ApiKeys,
    uow: Callable[[], SqlUnitOfWork],
    metrics_public: bool = True,
    docs_public: bool = True,
    meter_provider: MeterProvider | None = None,
) -> FastAPI:
    """Build the app around a broker (tests pass their own) and the actors it sends to, by route name.

    ``api_keys`` has no default: an open API is asked for with ``ApiKeys.disabled()``, never the result of a
    forgotten argument. ``uow`` opens the database that records accepted orders. ``metrics_public`` and
    ``docs_public`` leave ``/metrics`` and the OpenAPI document and pages open. ``meter_provider`` receives
    the HTTP server metrics; the global one by default.
    """
    app = FastAPI(
        title="tracedq producer API",
        version="1.0",
        description="Accepts work for the tracedq actors. Every accepted message links to its trace in Jaeger.",
        lifespan=_flush_on_shutdown,
        openapi_url=None,  # served by install_docs_routes, open or behind the key
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    protected = api_keys.dependencies()
    errors: dict[int | str, dict[str, Any]] = {
        400: {"description": "the body is not valid JSON (the message names the error and where it is)"},
        415: {"description": "the body was not sent with Content-Type: application/json"},
        413: {"description": f"request body over {max_body_bytes} bytes"},
        503: {"description": "RabbitMQ or the database unreachable: nothing was queued"},
        **(UNAUTHORIZED if api_keys.enabled else {}),
    }

    def publish(message: dramatiq.Message[Any]) -> JSONResponse | None:
        """Enqueue with confirms; the 503 to answer when RabbitMQ is unreachable."""
        try:
            broker.enqueue(message)
        except BrokerConnectionError as exc:
            return error_response(503, "broker_unavailable", f"RabbitMQ is unreachable; nothing was queued ({exc})")
        return None

    def send(route: str, payload: Payload | None) -> JSONResponse:
        actor = actors[route]
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=actor.queue_name,
            actor_name=actor.actor_name,
            args=(payload.wire(),) if payload is not None else (),
            kwargs={},
            options={},
        )
        refused = publish(message)
        if refused is not None:
            return refused
        trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
        return accepted_response(jaeger_url, message.message_id, trace_id)

    install_order_routes(
        app,
        actor=actors["orders"],
        publish=publish,
        uow=uow,
        jaeger_url=jaeger_url,
        dependencies=protected,
        responses=errors,
    )

    @app.post("/users", status_code=202, response_model=Accepted, responses=errors, dependencies=protected)
    def register_user(user: RegisterUser) -> JSONResponse:
        """Register a user; the welcome email follows."""
        return send("users", user)

    @app.post("/catalog/refresh", status_code=202, response_model=Accepted, responses=errors, dependencies=protected)
    def refresh_catalog() -> JSONResponse:
        """Ask every running worker to reload its catalogue cache."""
        return send("catalog", None)

    install_health_routes(app, checks, metrics_dependencies=[] if metrics_public else protected)
    install_docs_routes(app, dependencies=[] if docs_public else protected)
    # No ASGI receive/send sub-spans: three extra spans per request that say nothing a user looks for.
    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls="health/live,health/ready,metrics",
        exclude_spans=["receive", "send"],
        meter_provider=meter_provider,
    )
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    return app
