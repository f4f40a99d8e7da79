"""The order flow (orders -> inventory -> email) as tests drive and judge it: payloads, stock, and the database's
record of what took effect."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from services.model import Order, Product
from tests.environment.database import session

__all__ = ["FLOW_QUEUES", "order_payloads", "placed_ids", "seed_stock", "settled_count"]

#: Every queue the order and user flows touch, with their delay and dead-letter queues.
FLOW_QUEUES = tuple(
    name for base in ("orders", "inventory", "users", "email") for name in (base, f"{base}.DQ", f"{base}.XQ")
)


def order_payloads(count: int, prefix: str, *, scarce_sku: str | None = None) -> list[dict[str, Any]]:
    """``count`` distinct orders of SKU-A (1-3 each); with ``scarce_sku`` every order also wants one of that."""
    orders = []
    for index in range(count):
        lines = [{"sku": "SKU-A", "quantity": index % 3 + 1}]
        if scarce_sku is not None:
            lines.append({"sku": scarce_sku, "quantity": 1})
        orders.append({"order_id": f"{prefix}-{index}", "customer_email": f"c{index}@example.com", "lines": lines})
    return orders


def seed_stock(engine: Engine, stock: dict[str, int]) -> None:
    """Add a product per SKU with that much stock (named as its SKU)."""
    with session(engine) as db:
        for sku, quantity in stock.items():
            db.add(Product(sku=sku, name=sku, stock=quantity))
        db.commit()


def placed_ids(engine: Engine) -> set[str]:
    """Ids of the orders in the database: the effect of ``place_order``."""
    with session(engine) as db:
        return set(db.scalars(select(Order.id)))


def settled_count(engine: Engine) -> int:
    """Orders past ``pending``: the effect of ``reserve_inventory``."""
    with session(engine) as db:
        return int(db.scalar(select(func.count()).select_from(Order).where(Order.status != "pending")) or 0)
