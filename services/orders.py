"""Orders: place an order, reserve its stock, release expired reservations, report stock.

Insufficient stock is a business outcome (the order is ``rejected`` with the reason), not an error to retry.
Every step claims an idempotency key in its own transaction, so a redelivered message changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import structlog
from opentelemetry import trace
from sqlalchemy import select

from services.errors import UnknownOrder
from services.model import Order, OrderLine, Product, Reservation
from services.unit_of_work import Duplicate, SqlUnitOfWork

__all__ = ["Line", "Outcome", "place_order", "release_expired_reservations", "reserve_inventory", "stock_report"]

_tracer = trace.get_tracer(__name__)
_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Line:
    """One SKU and quantity."""

    sku: str
    quantity: int


@dataclass(frozen=True)
class Outcome:
    """What a step did: ``status`` is the order's status after it, ``duplicate`` when it did nothing."""

    order_id: str
    status: str
    reason: str | None = None
    duplicate: bool = False


def place_order(uow: SqlUnitOfWork, *, order_id: str, customer_email: str, lines: list[Line]) -> Outcome:
    """Record a new order as ``pending``. Placing the same order id again is a duplicate, not a second order."""
    with _tracer.start_as_current_span("place order", attributes={"order.id": order_id}), uow:
        try:
            uow.claim(f"place_order:{order_id}")
            uow.session.add(
                Order(
                    id=order_id,
                    customer_email=customer_email,
                    status="pending",
                    created_at=uow.clock(),
                    lines=[OrderLine(sku=line.sku, quantity=line.quantity) for line in lines],
                )
            )
            uow.commit()
        except Duplicate:
            _log.info("order_already_placed", order_id=order_id)
            return Outcome(order_id, "pending", duplicate=True)
    _log.info("order_placed", order_id=order_id, lines=len(lines))
    return Outcome(order_id, "pending")


def reserve_inventory(uow: SqlUnitOfWork, *, order_id: str, hold: timedelta = timedelta(minutes=15)) -> Outcome:
    """Deduct stock for every line of a pending order, all or nothing, and hold it for ``hold``.

    Raises:
        UnknownOrder: the order was never placed.
    """
    with _tracer.start_as_current_span("reserve inventory", attributes={"order.id": order_id}), uow:
        try:
            uow.claim(f"reserve_inventory:{order_id}")
        except Duplicate:
            order = uow.session.get(Order, order_id)
            return Outcome(order_id, order.status if order else "unknown", duplicate=True)
        order = uow.session.get(Order, order_id)
        if order is None:
            raise UnknownOrder(order_id)
        wanted = {line.sku: line.quantity for line in order.lines}
        products = {
            p.sku: p
            for p in uow.session.scalars(
                select(Product).where(Product.sku.in_(sorted(wanted))).order_by(Product.sku).with_for_update()
            )
        }
        short = [
            f"{sku} (wanted {qty}, have {products[sku].stock if sku in products else 'unknown product'})"
            for sku, qty in sorted(wanted.items())
            if sku not in products or products[sku].stock < qty
        ]
        if short:
            order.status, order.reason = "rejected", "insufficient stock: " + ", ".join(short)
        else:
            expires_at = uow.clock() + hold
            for sku, qty in wanted.items():
                products[sku].stock -= qty
                uow.session.add(Reservation(order_id=order_id, sku=sku, quantity=qty, expires_at=expires_at))
            order.status = "reserved"
        try:
            uow.commit()
        except Duplicate:
            return Outcome(order_id, "unknown", duplicate=True)
        trace.get_current_span().set_attribute("order.status", order.status)
    _log.info("inventory_reserved" if not short else "order_rejected", order_id=order_id, reason=order.reason)
    return Outcome(order_id, order.status, order.reason)


def release_expired_reservations(uow: SqlUnitOfWork) -> int:
    """Give back the stock of reservations past their expiry and mark their orders ``expired``.

    Returns:
        How many reservations were released.
    """
    with _tracer.start_as_current_span("release expired reservations"), uow:
        now = uow.clock()
        expired = list(
            uow.session.scalars(
                select(Reservation)
                .where(Reservation.released.is_(False), Reservation.expires_at <= now)
                .with_for_update(skip_locked=True)
            )
        )
        for reservation in expired:
            product = uow.session.get(Product, reservation.sku, with_for_update=True)
            if product is not None:
                product.stock += reservation.quantity
            reservation.released = True
            order = uow.session.get(Order, reservation.order_id)
            if order is not None and order.status == "reserved":
                order.status = "expired"
        uow.commit()
    _log.info("reservations_released", count=len(expired))
    return len(expired)


def stock_report(uow: SqlUnitOfWork) -> dict[str, int]:
    """Stock on hand per SKU."""
    with _tracer.start_as_current_span("stock report"), uow:
        return {p.sku: p.stock for p in uow.session.scalars(select(Product).order_by(Product.sku))}
