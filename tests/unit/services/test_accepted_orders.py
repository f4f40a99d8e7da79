"""accept_order publishes once per order id, records nothing when the publish fails; order_status reads both tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.accepted_orders import Acceptance, OrderConflict, OrderStatus, accept_order, order_status
from services.model import Order
from tests.api_support import sqlite_uow


def test_first_acceptance_publishes_and_a_repeat_does_not() -> None:
    uow = sqlite_uow()
    published: list[str] = []
    fields = {"order_id": "o-1", "body_sha256": "a" * 64, "trace_id": "f" * 32}
    first = accept_order(uow(), message_id="m-1", publish=lambda: published.append("m-1"), **fields)
    again = accept_order(uow(), message_id="m-2", publish=lambda: published.append("m-2"), **fields)
    assert (first, again) == (Acceptance("m-1", "f" * 32, repeated=False), Acceptance("m-1", "f" * 32, repeated=True))
    assert published == ["m-1"]


def test_another_body_is_a_conflict_and_publishes_nothing() -> None:
    uow = sqlite_uow()
    accept_order(uow(), order_id="o-1", body_sha256="a" * 64, message_id="m-1", trace_id="t", publish=lambda: None)

    def must_not_publish() -> None:
        raise AssertionError("published a conflicting order")

    with pytest.raises(OrderConflict, match="order 'o-1' was already accepted with a different body"):
        accept_order(
            uow(), order_id="o-1", body_sha256="b" * 64, message_id="m-2", trace_id="t", publish=must_not_publish
        )


def test_a_publish_that_raises_records_nothing() -> None:
    uow = sqlite_uow()

    def refused() -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        accept_order(uow(), order_id="o-1", body_sha256="a" * 64, message_id="m-1", trace_id="t", publish=refused)
    assert order_status(uow(), "o-1") is None


def test_status_of_an_order_sent_to_the_actor_directly_has_no_trace() -> None:
    """An order placed by another producer (no API record) still has a status; its trace is unknown here."""
    uow = sqlite_uow()
    with uow() as work:
        work.session.add(
            Order(id="o-9", customer_email="x@example.com", status="rejected", reason="r", created_at=datetime.now(UTC))
        )
        work.session.commit()
    assert order_status(uow(), "o-9") == OrderStatus("o-9", "rejected", "r", trace_id=None, message_id=None)
