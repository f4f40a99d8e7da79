"""Effects stay exactly once when a worker dies mid-load (SIGKILL) and when two workers share the queues.

RabbitMQ redelivers whatever a dead worker held unacked (``dramatiq.message.redelivered``); the
idempotency ledger turns a redelivery of a committed step into a no-op (``dramatiq.message.duplicate``).
The database is the judge: every order placed once, stock deducted once, one reservation set per order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, select

from otlp_receiver import OtlpReceiver, ReceivedSpan
from services.model import Order, OrderLine, Product, Reservation
from tests.environment.database import session
from tests.environment.polling import wait_until
from tests.environment.processes import ServiceProcess
from tests.environment.sender import FlowSender
from tests.environment.smtp import SmtpServer
from tests.environment.stack import Stack
from tests.order_flow import placed_ids, seed_stock, settled_count

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(240)]

WAIT = 90.0
FAST_EMAIL = {"EMAIL_RATE_LIMIT": "100000"}  # the emails are not what these tests are about
STOCK = {"SKU-A": 1_000, "SKU-B": 30}


def _orders(count: int, prefix: str) -> list[dict[str, Any]]:
    """Every order wants one SKU-B (30 in stock) and some SKU-A (plenty): exactly 30 can be reserved."""
    return [
        {
            "order_id": f"{prefix}-{index}",
            "customer_email": f"customer{index}@example.com",
            "lines": [{"sku": "SKU-A", "quantity": index % 3 + 1}, {"sku": "SKU-B", "quantity": 1}],
        }
        for index in range(count)
    ]


def _assert_exactly_once(engine: Engine, orders: list[dict[str, Any]]) -> None:
    """Each order placed once, reserved or rejected once; stock moved exactly by the reservations."""
    wanted = {o["order_id"]: sorted((line["sku"], line["quantity"]) for line in o["lines"]) for o in orders}
    with session(engine) as db:
        rows = {order.id: order for order in db.scalars(select(Order))}
        assert set(rows) == set(wanted)
        lines: dict[str, list[tuple[str, int]]] = {}
        for line in db.scalars(select(OrderLine)):
            lines.setdefault(line.order_id, []).append((line.sku, line.quantity))
        assert {key: sorted(value) for key, value in lines.items()} == wanted  # placed exactly once
        reservations: dict[str, list[tuple[str, int]]] = {}
        for reservation in db.scalars(select(Reservation)):
            reservations.setdefault(reservation.order_id, []).append((reservation.sku, reservation.quantity))
        stock = {product.sku: product.stock for product in db.scalars(select(Product))}

    statuses = Counter(order.status for order in rows.values())
    assert statuses == {"reserved": STOCK["SKU-B"], "rejected": len(orders) - STOCK["SKU-B"]}, statuses
    for order_id, order in rows.items():
        if order.status == "reserved":
            # exactly one reservation set: one row per line, none twice
            assert sorted(reservations.get(order_id, [])) == wanted[order_id], order_id
        else:
            assert order_id not in reservations, order_id
            assert order.reason is not None and order.reason.startswith("insufficient stock: SKU-B"), order.reason
    for sku, initial in STOCK.items():
        held = sum(qty for entries in reservations.values() for (s, qty) in entries if s == sku)
        assert initial - stock[sku] == held, f"{sku}: {initial} - {stock[sku]} != {held} reserved"
    assert stock["SKU-B"] == 0


def _process_spans(receiver: OtlpReceiver, queue: str) -> list[ReceivedSpan]:
    return [span for span in receiver.spans if span.name == f"process {queue}"]


def test_sigkill_mid_load_redelivers_and_effects_stay_exactly_once(
    flow_env: Stack,
    flow_sender: FlowSender,
    flow_database: Engine,
    smtp_server: SmtpServer,
    start_flow_worker: Callable[..., ServiceProcess],
    otlp_receiver: OtlpReceiver,
) -> None:
    seed_stock(flow_database, STOCK)
    orders = _orders(40, "crash")
    for payload in orders:
        flow_sender.send("orders", "place_order", payload)
    assert flow_env.ready_count("orders") == len(orders)

    first = start_flow_worker(**FAST_EMAIL)
    assert wait_until(lambda: len(placed_ids(flow_database)) >= 1, WAIT, interval=0.005), first.describe()
    first.kill()  # SIGKILL the whole group: no ack, no flush, transactions cut off mid-way
    placed_by_first = len(placed_ids(flow_database))

    second = start_flow_worker(**FAST_EMAIL)
    assert wait_until(lambda: settled_count(flow_database) == len(orders), WAIT, interval=0.1), second.describe()
    # Emails are at least once; wait for one per order so that nothing is in flight when the worker stops.
    recipients = {o["customer_email"] for o in orders}
    assert smtp_server.wait_for(lambda ms: recipients <= {r for m in ms for r in m.rcpt_tos}, WAIT), second.describe()
    assert second.terminate() == 0, second.describe()  # flushes the survivor's spans

    _assert_exactly_once(flow_database, orders)

    processes = _process_spans(otlp_receiver, "orders")
    redelivered = [s for s in processes if s.attributes.get("dramatiq.message.redelivered") is True]
    duplicates = [s for s in processes if s.attributes.get("dramatiq.message.duplicate") is True]
    # A place_order can only be a duplicate of itself, so a duplicate is always a redelivery.
    assert all(s.attributes.get("dramatiq.message.redelivered") is True for s in duplicates), duplicates
    if placed_by_first < len(orders):
        # The dead worker held prefetched orders unacked (a backlog was waiting): RabbitMQ redelivered them.
        assert redelivered, f"{placed_by_first} placed before the kill, yet no redelivered process span"
    assert all(s.attributes.get("dramatiq.message.outcome") == "success" for s in redelivered)


def test_competing_workers_split_the_orders_and_effects_stay_exactly_once(
    flow_env: Stack,
    flow_sender: FlowSender,
    flow_database: Engine,
    smtp_server: SmtpServer,
    start_flow_worker: Callable[..., ServiceProcess],
    otlp_receiver: OtlpReceiver,
) -> None:
    seed_stock(flow_database, STOCK)
    flow_sender.declare("orders")
    workers = [start_flow_worker(**FAST_EMAIL), start_flow_worker(**FAST_EMAIL)]
    # Both consume before anything is sent, so RabbitMQ has two consumers to deal the messages to.
    assert wait_until(lambda: flow_env.consumer_count("orders") >= 2, WAIT, interval=0.1), [
        w.describe() for w in workers
    ]

    orders = _orders(60, "split")
    messages = {flow_sender.send("orders", "place_order", payload).message_id for payload in orders}
    assert wait_until(lambda: settled_count(flow_database) == len(orders), WAIT, interval=0.1), [
        w.describe() for w in workers
    ]
    recipients = {o["customer_email"] for o in orders}
    assert smtp_server.wait_for(lambda ms: recipients <= {r for m in ms for r in m.rcpt_tos}, WAIT)
    for worker in workers:
        assert worker.terminate() == 0, worker.describe()

    _assert_exactly_once(flow_database, orders)

    processes = _process_spans(otlp_receiver, "orders")
    assert sorted(s.attributes["messaging.message.id"] for s in processes) == sorted(messages)  # each once
    assert all(s.attributes["dramatiq.message.outcome"] == "success" for s in processes)
    per_process = Counter(s.resource["service.instance.id"] for s in processes)
    assert len(per_process) == 2, per_process
    assert all(count > 0 for count in per_process.values()), per_process
