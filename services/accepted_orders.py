"""Orders accepted by the API: queue each order id once, and report where an order is.

``accept_order`` inserts the ``accepted_orders`` row, publishes, then commits, in that order and in one
transaction:

- publish fails: the transaction rolls back, nothing is recorded and nothing was queued; the caller may retry.
- the process dies after the publish and before the commit: the row is rolled back but the message is queued.
  A retry of the same request publishes a second message for the same order, which ``place_order`` absorbs
  (its idempotency key is the order id): a duplicate, never a loss. Committing before publishing would turn
  the same crash into an order recorded as accepted and never queued, answered 202 on every retry.
- two requests for one order id at once: the second one's insert waits on the first's primary key (PostgreSQL
  row lock, SQLite write lock) and, once the first commits, finds its row: the same body is answered with the
  first message's id, a different one is a conflict. Neither publishes twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from services.model import AcceptedOrder, Order
from services.unit_of_work import SqlUnitOfWork

__all__ = ["Acceptance", "OrderConflict", "OrderStatus", "accept_order", "order_status"]

# A racing request that rolled back (its publish failed) frees the order id: try the insert again.
_ATTEMPTS = 3


class OrderConflict(Exception):
    """The order id was accepted before with a different body."""

    def __init__(self, order_id: str, message_id: str) -> None:
        super().__init__(f"order {order_id!r} was already accepted with a different body (message {message_id})")
        self.order_id = order_id
        self.message_id = message_id


@dataclass(frozen=True)
class Acceptance:
    """The message that carries the order; ``repeated`` when an earlier request queued it."""

    message_id: str
    trace_id: str
    repeated: bool


@dataclass(frozen=True)
class OrderStatus:
    """Where an order is: ``pending`` until the worker settles it, then ``reserved``, ``rejected`` or ``expired``.

    ``trace_id`` and ``message_id`` are those of the request that queued it (None for an order sent to the
    actor directly, not through the API).
    """

    order_id: str
    status: str
    reason: str | None
    trace_id: str | None
    message_id: str | None


def accept_order(
    uow: SqlUnitOfWork,
    *,
    order_id: str,
    body_sha256: str,
    message_id: str,
    trace_id: str,
    publish: Callable[[], None],
) -> Acceptance:
    """Record the order and call ``publish`` once, unless the order id was accepted before.

    Raises:
        OrderConflict: the order id was accepted with another body; nothing is published.
        Exception: whatever ``publish`` raises; nothing is recorded then.
    """
    for _ in range(_ATTEMPTS):
        with uow:
            existing = uow.session.get(AcceptedOrder, order_id)
            if existing is None:
                uow.session.add(
                    AcceptedOrder(
                        order_id=order_id,
                        body_sha256=body_sha256,
                        message_id=message_id,
                        trace_id=trace_id,
                        accepted_at=uow.clock(),
                    )
                )
                try:
                    uow.session.flush()
                except IntegrityError:
                    continue  # a concurrent request holds or has just committed this id: read it again
                publish()
                uow.session.commit()
                return Acceptance(message_id, trace_id, repeated=False)
            if existing.body_sha256 != body_sha256:
                raise OrderConflict(order_id, existing.message_id)
            return Acceptance(existing.message_id, existing.trace_id, repeated=True)
    raise RuntimeError(f"order {order_id!r}: concurrent requests kept rolling back; retry")


def order_status(uow: SqlUnitOfWork, order_id: str) -> OrderStatus | None:
    """The order's status (the worker's ``orders`` row, else ``pending`` when only accepted); None if unknown."""
    with uow:
        accepted = uow.session.get(AcceptedOrder, order_id)
        order = uow.session.get(Order, order_id)
        if accepted is None and order is None:
            return None
        return OrderStatus(
            order_id=order_id,
            status=order.status if order is not None else "pending",
            reason=order.reason if order is not None else None,
            trace_id=accepted.trace_id if accepted is not None else None,
            message_id=accepted.message_id if accepted is not None else None,
        )
