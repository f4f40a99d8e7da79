"""``POST /orders`` queued once per order id, and ``GET /orders/{order_id}``: where the order is.

A repeated ``POST`` with the same body answers 202 with the first message's id and trace, and publishes
nothing; a different body for the same id is a 409. The record lives in the ``accepted_orders`` table
(services/accepted_orders.py says what a crash between recording and publishing leaves behind).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

import dramatiq
import structlog
from fastapi import FastAPI, Path
from fastapi.responses import JSONResponse
from opentelemetry import trace
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from actors.payloads import PlaceOrder
from api.accepted import Accepted, accepted_response
from api.errors import error_response
from services.accepted_orders import OrderConflict, accept_order, order_status
from services.unit_of_work import SqlUnitOfWork

__all__ = ["OrderState", "install_order_routes"]

_log = structlog.get_logger(__name__)


class OrderState(BaseModel):
    """What ``GET /orders/{order_id}`` answers."""

    order_id: str
    status: Literal["pending", "reserved", "rejected", "expired"]
    reason: str | None
    message_id: str | None
    trace_id: str | None
    trace_url: str | None


def body_digest(order: PlaceOrder) -> str:
    """SHA-256 of the order's wire form with sorted keys: key order, spacing and an explicit default don't count."""
    canonical = json.dumps(order.wire(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _database_unavailable(exc: SQLAlchemyError) -> JSONResponse:
    # The driver's exception type only: SQLAlchemy's text carries the statement and its parameters.
    cause = type(getattr(exc, "orig", None) or exc).__name__
    return error_response(
        503, "database_unavailable", f"the database is unreachable or not migrated; nothing was queued ({cause})"
    )


def install_order_routes(
    app: FastAPI,
    *,
    actor: dramatiq.Actor[Any, Any],
    publish: Callable[[dramatiq.Message[Any]], JSONResponse | None],
    uow: Callable[[], SqlUnitOfWork],
    jaeger_url: str,
    dependencies: Sequence[Any],
    responses: dict[int | str, dict[str, Any]],
) -> None:
    """Add the two order routes. ``publish`` returns an error response when the broker refused the message."""

    class _BrokerRefused(Exception):
        def __init__(self, response: JSONResponse) -> None:
            self.response = response

    post_responses = {
        **responses,
        409: {"description": "this order id was accepted before with a different body; nothing was queued"},
    }

    @app.post(
        "/orders",
        status_code=202,
        response_model=Accepted,
        responses=post_responses,
        dependencies=list(dependencies),
    )
    def place_order(order: PlaceOrder) -> JSONResponse:
        """Place an order: stock is reserved and the customer emailed, asynchronously.

        Sending the same order again (same ``order_id``, same body) answers 202 with the first message's id and
        queues nothing; the same ``order_id`` with another body is a 409.
        """
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=actor.queue_name, actor_name=actor.actor_name, args=(order.wire(),), kwargs={}, options={}
        )

        published = False

        def publish_or_raise() -> None:
            nonlocal published
            refused = publish(message)
            if refused is not None:
                raise _BrokerRefused(refused)
            published = True

        trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
        try:
            acceptance = accept_order(
                uow(),
                order_id=order.order_id,
                body_sha256=body_digest(order),
                message_id=message.message_id,
                trace_id=trace_id,
                publish=publish_or_raise,
            )
        except _BrokerRefused as refused:
            return refused.response
        except OrderConflict as conflict:
            return error_response(
                409,
                "order_conflict",
                f"order {order.order_id!r} was already accepted with a different body "
                f"(message {conflict.message_id}); use a new order_id for a different order",
                message_id=conflict.message_id,
            )
        except SQLAlchemyError as exc:
            if not published:
                return _database_unavailable(exc)
            # The commit after the publish failed: RabbitMQ has the order, so it is accepted. Without its record,
            # a repeat would queue a second copy, which place_order absorbs (its idempotency key is the order id).
            _log.warning("order_record_not_saved", order_id=order.order_id, error=type(exc).__name__)
            return accepted_response(jaeger_url, message.message_id, trace_id)
        return accepted_response(jaeger_url, acceptance.message_id, acceptance.trace_id)

    @app.get(
        "/orders/{order_id}",
        response_model=OrderState,
        responses={404: {"description": "no order with this id"}, **responses},
        dependencies=list(dependencies),
    )
    def get_order(order_id: str = Path(min_length=1, max_length=64)) -> JSONResponse:
        """The order's status (``pending`` until a worker places it) and the trace of the request that queued it."""
        try:
            state = order_status(uow(), order_id)
        except SQLAlchemyError as exc:
            return _database_unavailable(exc)
        if state is None:
            return error_response(404, "not_found", f"no order {order_id!r}")
        body = OrderState(
            order_id=state.order_id,
            status=state.status,  # type: ignore[arg-type]  # the worker writes only these four
            reason=state.reason,
            message_id=state.message_id,
            trace_id=state.trace_id,
            trace_url=f"{jaeger_url}/trace/{state.trace_id}" if state.trace_id else None,
        )
        return JSONResponse(body.model_dump())
