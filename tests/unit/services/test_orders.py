"""Orders: business outcomes and exactly-once effects, on a real SQLite database."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from services import orders
from services.errors import UnknownOrder
from services.model import Order, Product, Reservation
from services.unit_of_work import SqlUnitOfWork


def stock(factory: sessionmaker[Session]) -> dict[str, int]:
    with factory() as session:
        return {p.sku: p.stock for p in session.scalars(select(Product))}


def place(factory: sessionmaker[Session], order_id: str, **lines: int) -> orders.Outcome:
    return orders.place_order(
        SqlUnitOfWork(factory),
        order_id=order_id,
        customer_email="ada@example.com",
        lines=[orders.Line(sku, qty) for sku, qty in lines.items()],
    )


def test_reserving_deducts_stock_and_holds_it(session_factory: sessionmaker[Session]) -> None:
    """An order with stock available is reserved: stock goes down, one reservation per line."""
    place(session_factory, "o1", APPLE=3, PEAR=1)
    outcome = orders.reserve_inventory(SqlUnitOfWork(session_factory), order_id="o1")
    assert outcome == orders.Outcome("o1", "reserved")
    assert stock(session_factory) == {"APPLE": 7, "PEAR": 1}
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Reservation)) == 2


def test_short_stock_rejects_the_order_and_deducts_nothing(session_factory: sessionmaker[Session]) -> None:
    """Insufficient stock is an outcome with a reason, all or nothing, not an exception."""
    place(session_factory, "o2", APPLE=1, PEAR=5)
    outcome = orders.reserve_inventory(SqlUnitOfWork(session_factory), order_id="o2")
    assert outcome.status == "rejected"
    assert outcome.reason == "insufficient stock: PEAR (wanted 5, have 2)"
    assert stock(session_factory) == {"APPLE": 10, "PEAR": 2}


def test_every_step_twice_has_one_effect(session_factory: sessionmaker[Session]) -> None:
    """Placing and reserving the same order twice (a redelivery) deducts stock once and says duplicate."""
    assert not place(session_factory, "o3", APPLE=4).duplicate
    assert place(session_factory, "o3", APPLE=4).duplicate
    first = orders.reserve_inventory(SqlUnitOfWork(session_factory), order_id="o3")
    second = orders.reserve_inventory(SqlUnitOfWork(session_factory), order_id="o3")
    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.status == "reserved"
    assert stock(session_factory) == {"APPLE": 6, "PEAR": 2}


def test_competing_consumers_reserve_once(session_factory: sessionmaker[Session]) -> None:
    """Eight threads reserving the same order at once: exactly one deducts."""
    place(session_factory, "o4", APPLE=2)
    results: list[orders.Outcome] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def reserve() -> None:
        barrier.wait()
        try:
            results.append(orders.reserve_inventory(SqlUnitOfWork(session_factory), order_id="o4"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reserve) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(not r.duplicate for r in results) == 1
    assert len(results) == 8
    assert stock(session_factory)["APPLE"] == 8


def test_unknown_order_is_a_permanent_error(session_factory: sessionmaker[Session]) -> None:
    """Reserving an order that was never placed cannot succeed by retrying."""
    with pytest.raises(UnknownOrder):
        orders.reserve_inventory(SqlUnitOfWork(session_factory), order_id="ghost")


def test_expired_reservations_give_stock_back(session_factory: sessionmaker[Session]) -> None:
    """Past its hold, a reservation returns its stock and the order becomes expired; once only."""
    place(session_factory, "o5", APPLE=5)
    orders.reserve_inventory(SqlUnitOfWork(session_factory), order_id="o5", hold=timedelta(minutes=1))
    later = datetime.now(UTC) + timedelta(minutes=2)
    assert orders.release_expired_reservations(SqlUnitOfWork(session_factory, clock=lambda: later)) == 1
    assert orders.release_expired_reservations(SqlUnitOfWork(session_factory, clock=lambda: later)) == 0
    assert stock(session_factory)["APPLE"] == 10
    with session_factory() as session:
        assert session.get(Order, "o5").status == "expired"


def test_stock_report_lists_every_sku(uow: SqlUnitOfWork) -> None:
    """The daily report is stock per SKU."""
    assert orders.stock_report(uow) == {"APPLE": 10, "PEAR": 2}
