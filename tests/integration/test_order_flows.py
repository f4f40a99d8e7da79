"""Each flow end to end on RabbitMQ + PostgreSQL + SMTP, with the whole span tree asserted.

The test process publishes the first message by actor name through its own traced broker (its ``send``
span lands in the session's in-memory exporter); a real ``dramatiq actors`` worker process does the rest
against PostgreSQL and an aiosmtpd server and exports its spans over OTLP to the in-test receiver. One
trace runs from the test's send to the SMTP exchange:

    send orders (test) -> process orders -> place order -> INSERT ... / send inventory
      -> process inventory -> reserve inventory -> SELECT ... FOR UPDATE, UPDATE ... / send email
        -> process email -> notify customer -> smtp send (CLIENT)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import Engine, select

from otlp_receiver import OtlpReceiver, ReceivedSpan
from services.model import Order, Product, Reservation, User
from tests.environment.database import session
from tests.environment.processes import ServiceProcess
from tests.environment.sender import FlowSender
from tests.environment.smtp import SmtpServer
from tests.received_spans import child, hex_ids, only

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(150)]

ORDER_FLOW_SPANS = {
    "process orders",
    "place order",
    "send inventory",
    "process inventory",
    "reserve inventory",
    "send email",
    "process email",
    "notify customer",
    "smtp send",
}
WAIT = 60.0
#: ``flow_env``'s database is ``tracedq_flows_<random>`` (tests/integration/conftest.py): its SQL spans name it.
DATABASE_NAME = "tracedq_flows"


def _seed(engine: Engine, stock: dict[str, int]) -> None:
    with session(engine) as db:
        for sku, quantity in stock.items():
            db.add(Product(sku=sku, name=sku.title(), stock=quantity))
        db.commit()


def _test_send(span_exporter: InMemorySpanExporter, queue: str) -> Any:
    sends = [span for span in span_exporter.get_finished_spans() if span.name == f"send {queue}"]
    assert len(sends) == 1, [span.name for span in span_exporter.get_finished_spans()]
    assert sends[0].kind is SpanKind.PRODUCER
    return sends[0]


def _wait_for_trace(
    receiver: OtlpReceiver, worker: ServiceProcess, trace_id: str, names: set[str]
) -> list[ReceivedSpan]:
    """Every span of ``trace_id`` once ``names`` have all arrived, after a graceful stop flushed the rest."""
    arrived = receiver.wait_for(lambda spans: names <= {s.name for s in spans if s.trace_id == trace_id}, WAIT)
    assert arrived, (
        f"missing {sorted(names - {s.name for s in receiver.spans if s.trace_id == trace_id})}; {worker.describe()}"
    )
    # SIGTERM flushes the worker's span queue: whatever belongs to the trace is here once it exits.
    assert worker.terminate() == 0, worker.describe()
    assert receiver.errors == []
    return [span for span in receiver.spans if span.trace_id == trace_id]


def _assert_process(span: ReceivedSpan, parent_id: str, queue: str, actor: str) -> None:
    assert span.kind is SpanKind.CONSUMER, span
    assert span.parent_span_id == parent_id, span
    assert span.status_code is not StatusCode.ERROR, span
    assert span.attributes["messaging.destination.name"] == queue
    assert span.attributes["dramatiq.actor.name"] == actor
    assert span.attributes["dramatiq.message.outcome"] == "success"
    assert span.resource.get("service.name") == "tracedq-flows-test"


def _assert_send(span: ReceivedSpan, parent: ReceivedSpan, queue: str, actor: str) -> None:
    assert span.kind is SpanKind.PRODUCER, span
    assert span.parent_span_id == parent.span_id, span
    assert span.attributes["messaging.destination.name"] == queue
    assert span.attributes["dramatiq.actor.name"] == actor


def _order_status(spans: list[ReceivedSpan]) -> Any:
    """``order.status`` as the reservation recorded it (on its own span, or on the process span around it)."""
    values = [only(spans, name).attributes.get("order.status") for name in ("reserve inventory", "process inventory")]
    assert len([v for v in values if v is not None]) == 1, values
    return next(v for v in values if v is not None)


def _sql_operations(spans: list[ReceivedSpan], worker: ServiceProcess, parent_name: str) -> set[str]:
    """The operations (``INSERT``, ``SELECT``...) of the SQLAlchemy CLIENT spans directly under ``parent_name``.

    opentelemetry-instrumentation-sqlalchemy names them ``<OPERATION> <database>``. When the worker logged
    that the instrumentor refused the installed SQLAlchemy, there are none at all: that is a known bug of
    ``actors/bootstrap.py`` (the instrumentation supports ``sqlalchemy < 2.1``), reported as an xfail so the
    rest of the tree stays checked, and the test passes as a whole once the instrumentation works.
    """
    sql = [s for s in spans if s.kind is SpanKind.CLIENT and f" {DATABASE_NAME}" in s.name]
    if not sql and "SQLAlchemyInstrumentor only instruments" in worker.output():
        pytest.xfail("no database spans: SQLAlchemyInstrumentor refused the installed SQLAlchemy (bootstrap.py)")
    parent = only(spans, parent_name)
    assert all(s.attributes.get("db.system") == "postgresql" or "db.system.name" in s.attributes for s in sql), sql
    return {s.name.split(" ", 1)[0] for s in sql if s.parent_span_id == parent.span_id}


def _assert_order_trace(spans: list[ReceivedSpan], send_span_id: str) -> None:
    """The order flow's tree, from the test's send to the SMTP exchange (database spans aside)."""
    assert len({s.trace_id for s in spans}) == 1

    process_orders = only(spans, "process orders")
    _assert_process(process_orders, send_span_id, "orders", "place_order")
    child(spans, process_orders, "place order")
    send_inventory = child(spans, process_orders, "send inventory")
    _assert_send(send_inventory, process_orders, "inventory", "reserve_inventory")

    process_inventory = only(spans, "process inventory")
    _assert_process(process_inventory, send_inventory.span_id, "inventory", "reserve_inventory")
    child(spans, process_inventory, "reserve inventory")
    send_email = child(spans, process_inventory, "send email")
    _assert_send(send_email, process_inventory, "email", "notify_customer")

    process_email = only(spans, "process email")
    _assert_process(process_email, send_email.span_id, "email", "notify_customer")
    notify = child(spans, process_email, "notify customer")
    smtp = child(spans, notify, "smtp send")
    assert smtp.kind is SpanKind.CLIENT
    assert smtp.status_code is not StatusCode.ERROR
    assert smtp.attributes["server.address"] == "127.0.0.1"


def test_order_is_reserved_end_to_end(
    flow_sender: FlowSender,
    flow_database: Engine,
    smtp_server: SmtpServer,
    start_flow_worker: Callable[..., ServiceProcess],
    otlp_receiver: OtlpReceiver,
    span_exporter: InMemorySpanExporter,
) -> None:
    _seed(flow_database, {"SKU-APPLE": 10, "SKU-PEAR": 5})
    payload = {
        "schema_version": 1,
        "order_id": "order-ok-1",
        "customer_email": "ada@example.com",
        "lines": [{"sku": "SKU-APPLE", "quantity": 2}, {"sku": "SKU-PEAR", "quantity": 1}],
    }
    worker = start_flow_worker()
    message = flow_sender.send("orders", "place_order", payload)

    trace_id, send_span_id = hex_ids(_test_send(span_exporter, "orders"))
    spans = _wait_for_trace(otlp_receiver, worker, trace_id, ORDER_FLOW_SPANS)
    _assert_order_trace(spans, send_span_id)
    assert _order_status(spans) == "reserved"
    assert only(spans, "process orders").attributes["messaging.message.id"] == message.message_id

    with session(flow_database) as db:
        order = db.get(Order, "order-ok-1")
        assert order is not None
        assert (order.status, order.reason) == ("reserved", None)
        assert {p.sku: p.stock for p in db.scalars(select(Product))} == {"SKU-APPLE": 8, "SKU-PEAR": 4}
        reservations = db.scalars(select(Reservation).where(Reservation.order_id == "order-ok-1")).all()
        assert sorted((r.sku, r.quantity) for r in reservations) == [("SKU-APPLE", 2), ("SKU-PEAR", 1)]

    assert smtp_server.wait_for(lambda messages: len(messages) >= 1, WAIT)
    [delivered] = smtp_server.messages
    assert delivered.rcpt_tos == ["ada@example.com"]
    assert "reserved" in delivered.subject
    assert "order-ok-1" in delivered.subject
    assert "Your order order-ok-1 is reserved." in delivered.body

    # Last, so that everything above is checked even while the database spans are missing (see the helper).
    assert "INSERT" in _sql_operations(spans, worker, "place order")  # the ledger key, the order, its lines
    assert {"SELECT", "UPDATE", "INSERT"} <= _sql_operations(spans, worker, "reserve inventory")  # stock, holds
    assert "INSERT" in _sql_operations(spans, worker, "notify customer")  # the ledger key, after the send


def test_order_short_of_stock_is_rejected_not_failed(
    flow_sender: FlowSender,
    flow_database: Engine,
    smtp_server: SmtpServer,
    start_flow_worker: Callable[..., ServiceProcess],
    otlp_receiver: OtlpReceiver,
    span_exporter: InMemorySpanExporter,
) -> None:
    _seed(flow_database, {"SKU-RARE": 1, "SKU-APPLE": 10})
    payload = {
        "order_id": "order-short-1",
        "customer_email": "grace@example.com",
        "lines": [{"sku": "SKU-APPLE", "quantity": 2}, {"sku": "SKU-RARE", "quantity": 3}],
    }
    worker = start_flow_worker()
    flow_sender.send("orders", "place_order", payload)

    trace_id, send_span_id = hex_ids(_test_send(span_exporter, "orders"))
    spans = _wait_for_trace(otlp_receiver, worker, trace_id, ORDER_FLOW_SPANS)
    _assert_order_trace(spans, send_span_id)
    # A business outcome, not an error: no ERROR anywhere in the trace, and no stock written.
    assert [s.name for s in spans if s.status_code is StatusCode.ERROR] == []
    assert _order_status(spans) == "rejected"

    reason = "insufficient stock: SKU-RARE (wanted 3, have 1)"
    with session(flow_database) as db:
        order = db.get(Order, "order-short-1")
        assert order is not None
        assert (order.status, order.reason) == ("rejected", reason)
        assert {p.sku: p.stock for p in db.scalars(select(Product))} == {"SKU-RARE": 1, "SKU-APPLE": 10}
        assert db.scalars(select(Reservation)).all() == []

    assert smtp_server.wait_for(lambda messages: len(messages) >= 1, WAIT)
    [delivered] = smtp_server.messages
    assert delivered.rcpt_tos == ["grace@example.com"]
    assert "rejected" in delivered.subject
    assert f"Reason: {reason}." in delivered.body

    assert "INSERT" in _sql_operations(spans, worker, "place order")
    assert {"SELECT", "UPDATE"} <= _sql_operations(spans, worker, "reserve inventory")  # the order's status


def test_user_registration_sends_the_welcome_email(
    flow_sender: FlowSender,
    flow_database: Engine,
    smtp_server: SmtpServer,
    start_flow_worker: Callable[..., ServiceProcess],
    otlp_receiver: OtlpReceiver,
    span_exporter: InMemorySpanExporter,
) -> None:
    payload = {"user_id": "user-1", "email": "linus@example.com", "name": "Linus"}
    worker = start_flow_worker()
    flow_sender.send("users", "register_user", payload)

    trace_id, send_span_id = hex_ids(_test_send(span_exporter, "users"))
    names = {"process users", "register user", "send email", "process email", "send welcome email", "smtp send"}
    spans = _wait_for_trace(otlp_receiver, worker, trace_id, names)
    assert [s.name for s in spans if s.status_code is StatusCode.ERROR] == []

    process_users = only(spans, "process users")
    _assert_process(process_users, send_span_id, "users", "register_user")
    child(spans, process_users, "register user")
    send_email = child(spans, process_users, "send email")
    _assert_send(send_email, process_users, "email", "send_welcome_email")
    process_email = only(spans, "process email")
    _assert_process(process_email, send_email.span_id, "email", "send_welcome_email")
    welcome = child(spans, process_email, "send welcome email")
    smtp = child(spans, welcome, "smtp send")
    assert smtp.kind is SpanKind.CLIENT

    with session(flow_database) as db:
        user = db.get(User, "user-1")
        assert user is not None
        assert (user.email, user.name) == ("linus@example.com", "Linus")

    assert smtp_server.wait_for(lambda messages: len(messages) >= 1, WAIT)
    [delivered] = smtp_server.messages
    assert delivered.rcpt_tos == ["linus@example.com"]
    assert delivered.subject == "Welcome!"
    assert "Hello Linus, welcome aboard." in delivered.body

    assert "INSERT" in _sql_operations(spans, worker, "register user")
    assert "INSERT" in _sql_operations(spans, worker, "send welcome email")
