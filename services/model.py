"""Tables, as SQLAlchemy 2 declarative models. Alembic migrations (``services/migrations``) build them in a
database: ``python -m actors.db upgrade``; a change here needs a revision (``python -m actors.db revision``).

``processed_messages`` is the idempotency ledger: a step writes its key there in the same transaction
as its effect, so a redelivered or replayed message finds the key and changes nothing.
``accepted_orders`` is the API's record of the orders it queued, so a repeated ``POST /orders`` is answered
from it instead of being published again (services/accepted_orders.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = ["AcceptedOrder", "Base", "Order", "OrderLine", "ProcessedMessage", "Product", "Reservation", "User"]


class Base(DeclarativeBase):
    """Declarative base of every table."""


class Product(Base):
    """A catalogue entry and its stock on hand."""

    __tablename__ = "products"
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    stock: Mapped[int] = mapped_column(Integer)


class Order(Base):
    """An order: ``pending`` when placed, then ``reserved``, ``rejected`` (with a reason) or ``expired``."""

    __tablename__ = "orders"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_email: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lines: Mapped[list[OrderLine]] = relationship(back_populates="order", cascade="all, delete-orphan")


class _QuantityOfSku:
    """The columns an order line and a reservation share: a row id, the order, a SKU and its quantity.

    ``sort_order=-1``: first in the table, as the migrations create them (a mixin's columns go last otherwise).
    """

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True, sort_order=-1)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), sort_order=-1)
    sku: Mapped[str] = mapped_column(String(64), sort_order=-1)
    quantity: Mapped[int] = mapped_column(Integer, sort_order=-1)


class OrderLine(_QuantityOfSku, Base):
    """One SKU and quantity of an order."""

    __tablename__ = "order_lines"
    order: Mapped[Order] = relationship(back_populates="lines")


class Reservation(_QuantityOfSku, Base):
    """Stock held for an order until ``expires_at``; released stock goes back to the product."""

    __tablename__ = "reservations"
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    released: Mapped[bool] = mapped_column(default=False)


class User(Base):
    """A registered user."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProcessedMessage(Base):
    """The idempotency ledger: one row per business step done, keyed by ``<step>:<business key>``."""

    __tablename__ = "processed_messages"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AcceptedOrder(Base):
    """An order the API queued: the body's digest tells a repeat from a conflict, and the ids answer both.

    Written by the API before the worker's ``orders`` row exists: until then the order is ``pending``.
    """

    __tablename__ = "accepted_orders"
    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    body_sha256: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(64))
    trace_id: Mapped[str] = mapped_column(String(32))
    accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
