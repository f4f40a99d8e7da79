"""Order flow actors: place_order -> reserve_inventory -> notify_customer, one queue each.

Thin by design: validate the payload, call the service, send the next step. Transient errors (database
down) propagate to Dramatiq's Retries; ``PermanentError`` (invalid payload, unknown order) is in
``throws`` and goes to the dead-letter queue at once.
"""

from __future__ import annotations

from typing import Any

from actors import bootstrap
from actors.email import email_actor
from actors.payload_actor import STEP_OPTIONS, payload_actor
from actors.payloads import OrderRef, PlaceOrder
from actors.span_marks import mark_duplicate
from services import notifications, orders

__all__ = ["notify_customer", "place_order", "reserve_inventory"]


@payload_actor(PlaceOrder, actor_name="place_order", queue_name="orders", time_limit=30_000, **STEP_OPTIONS)
def place_order(payload: dict[str, Any]) -> None:
    """Record the order, then ask for its stock."""
    order = PlaceOrder.parse(payload)
    lines = [orders.Line(line.sku, line.quantity) for line in order.lines]
    outcome = orders.place_order(
        bootstrap.dependencies().uow(), order_id=order.order_id, customer_email=order.customer_email, lines=lines
    )
    mark_duplicate(outcome.duplicate)
    reserve_inventory.send(OrderRef(order_id=order.order_id).wire())


@payload_actor(OrderRef, actor_name="reserve_inventory", queue_name="inventory", time_limit=30_000, **STEP_OPTIONS)
def reserve_inventory(payload: dict[str, Any]) -> None:
    """Deduct stock for the order (or reject it), then tell the customer."""
    ref = OrderRef.parse(payload)
    outcome = orders.reserve_inventory(bootstrap.dependencies().uow(), order_id=ref.order_id)
    mark_duplicate(outcome.duplicate)
    notify_customer.send(ref.wire())


notify_customer = email_actor(
    OrderRef,
    "notify_customer",
    lambda deps, ref: notifications.notify_customer(deps.uow(), deps.mailer, order_id=ref.order_id),
    doc="Email the customer the order's status (rate limited, behind the SMTP circuit breaker).",
)
