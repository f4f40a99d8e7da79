"""The producer HTTP API: validate with the actors' payload models, send, answer 202 with the trace.

Routes are thin: no business logic, one ``broker.enqueue`` each. The broker publishes with RabbitMQ
confirms, so a 202 means RabbitMQ has the message; when it cannot be reached the answer is 503 and the
next request reconnects by itself (Dramatiq drops a broken connection and opens a new one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import dramatiq
from dramatiq.errors import BrokerConnectionError
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.metrics import MeterProvider
from pydantic import BaseModel

from actors.payloads import Payload, PlaceOrder, RegisterUser
from api.errors import error_response, install_error_handlers
from api.health import Checks, install_health_routes
from api.limits import BodySizeLimit
from observability.hooks import flush_telemetry

__all__ = ["Accepted", "create_app"]


@asynccontextmanager
async def _flush_on_shutdown(app: FastAPI) -> AsyncIterator[None]:
    yield
    # uvicorn re-raises SIGTERM after this runs, so the SDK's atexit flush never would: spans of the last
    # requests before a deploy would be lost.
    flush_telemetry()


class Accepted(BaseModel):
    """What a 202 carries: the message's id and the trace to open in Jaeger."""

    message_id: str
    trace_id: str
    trace_url: str


def create_app(
    *,
    broker: dramatiq.Broker,
    actors: dict[str, dramatiq.Actor[Any, Any]],
    jaeger_url: str,
    max_body_bytes: int,
    checks: Checks,
    meter_provider: MeterProvider | None = None,
) -> FastAPI:
    """Build the app around a broker (tests pass their own) and the actors it sends to, by route name.

    ``meter_provider`` receives the HTTP server metrics; the global one by default.
    """
    app = FastAPI(
        title="tracedq producer API",
        version="1.0",
        description="Accepts work for the tracedq actors. Every accepted message links to its trace in Jaeger.",
        lifespan=_flush_on_shutdown,
    )
    install_error_handlers(app)
    errors: dict[int | str, dict[str, Any]] = {
        400: {"description": "the body is not valid JSON (the message names the error and where it is)"},
        415: {"description": "the body was not sent with Content-Type: application/json"},
        413: {"description": f"request body over {max_body_bytes} bytes"},
        503: {"description": "RabbitMQ unreachable: nothing was queued"},
    }

    def send(route: str, payload: Payload | None) -> JSONResponse:
        actor = actors[route]
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=actor.queue_name,
            actor_name=actor.actor_name,
            args=(payload.wire(),) if payload is not None else (),
            kwargs={},
            options={},
        )
        try:
            broker.enqueue(message)
        except BrokerConnectionError as exc:
            return error_response(503, "broker_unavailable", f"RabbitMQ is unreachable; nothing was queued ({exc})")
        trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
        body = Accepted(message_id=message.message_id, trace_id=trace_id, trace_url=f"{jaeger_url}/trace/{trace_id}")
        return JSONResponse(status_code=202, content=body.model_dump())

    @app.post("/orders", status_code=202, response_model=Accepted, responses=errors)
    def place_order(order: PlaceOrder) -> JSONResponse:
        """Place an order: stock is reserved and the customer emailed, asynchronously."""
        return send("orders", order)

    @app.post("/users", status_code=202, response_model=Accepted, responses=errors)
    def register_user(user: RegisterUser) -> JSONResponse:
        """Register a user; the welcome email follows."""
        return send("users", user)

    @app.post("/catalog/refresh", status_code=202, response_model=Accepted, responses=errors)
    def refresh_catalog() -> JSONResponse:
        """Ask every running worker to reload its catalogue cache."""
        return send("catalog", None)

    install_health_routes(app, checks)
    # No ASGI receive/send sub-spans: three extra spans per request that say nothing a user looks for.
    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls="health/live,health/ready,metrics",
        exclude_spans=["receive", "send"],
        meter_provider=meter_provider,
    )
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    return app
