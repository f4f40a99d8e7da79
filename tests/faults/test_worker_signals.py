"""Faults 1 and 2 of issue 7: a worker stopped (SIGTERM) or killed (SIGKILL) in the middle of a load of orders.

A few hundred ``place_order`` messages are published with confirms to the test's own vhost; a real
``dramatiq actors`` worker tree runs the whole order flow (orders -> inventory -> email) against PostgreSQL and
an SMTP server, exporting spans over OTLP to the in-test receiver. The database is the judge of what finished;
``rabbitmqctl list_queues`` (ready + unacknowledged) of what is still queued.

- SIGTERM: in-flight messages finish and are acked, the rest goes back to the queue. At every step of the flow
  ``finished + still queued == sent`` (0 lost, 0 dead-lettered) and the span count of each step equals its
  finished count exactly: the shutdown flush loses no span and invents none. A second worker then completes
  everything, each message processed exactly once.
- SIGKILL: the stronger version of ``tests/integration/test_redelivery.py::test_sigkill_mid_load...`` (40 orders,
  effects exactly once, "some span is redelivered"): here every message that had not taken effect before the
  kill has its process span from the restarted worker, every one whose effect was committed but whose ack died
  with the worker comes back with ``dramatiq.message.redelivered=true`` and ``dramatiq.message.duplicate=true``,
  nothing is dead-lettered or left queued, and the order effects are exactly once.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.trace import StatusCode
from sqlalchemy import select

from otlp_receiver import OtlpReceiver, ReceivedSpan
from services.model import Order, OrderLine, Product, Reservation
from tests.environment.database import session
from tests.environment.polling import wait_until
from tests.environment.processes import ServiceProcess
from tests.environment.sender import FlowSender
from tests.environment.smtp import SmtpServer
from tests.environment.stack import Stack
from tests.order_flow import FLOW_QUEUES, order_payloads, placed_ids, seed_stock, settled_count
from tests.received_spans import process_spans

pytestmark = [pytest.mark.faults, pytest.mark.rabbitmq, pytest.mark.timeout(120)]

WAIT = 75.0
REDELIVERED = "dramatiq.message.redelivered"
DUPLICATE = "dramatiq.message.duplicate"
OUTCOME = "dramatiq.message.outcome"
MESSAGE_ID = "messaging.message.id"


def _send_orders(sender: FlowSender, orders: list[dict[str, Any]]) -> dict[str, str]:
    """Publish every order (confirmed); message id -> order id."""
    return {sender.send("orders", "place_order", payload).message_id: payload["order_id"] for payload in orders}


def _queued(depths: dict[str, int], queue: str) -> int:
    """Messages of ``queue`` still waiting in it or in its delay queue."""
    return depths.get(queue, 0) + depths.get(f"{queue}.DQ", 0)


def _ids(spans: list[ReceivedSpan]) -> list[str]:
    return [span.attributes[MESSAGE_ID] for span in spans]


def _assert_clean(spans: list[ReceivedSpan]) -> None:
    """Every process span a success, none an error: no step failed, retried or was dead-lettered."""
    outcomes = Counter(span.attributes.get(OUTCOME) for span in spans)
    assert set(outcomes) <= {"success"}, outcomes
    assert not [span for span in spans if span.status_code is StatusCode.ERROR]


def _emails(smtp_server: SmtpServer) -> Counter[str]:
    return Counter(recipient for message in smtp_server.messages for recipient in message.rcpt_tos)


def test_sigterm_mid_load_loses_no_message_and_no_finished_span(
    fault_env: Stack,
    fault_sender: FlowSender,
    smtp_server: SmtpServer,
    start_worker: Callable[..., ServiceProcess],
    otlp_receiver: OtlpReceiver,
) -> None:
    """SIGTERM mid-load: finished + queued == sent at each step, one span per finished message, then all complete."""
    total = 200
    engine = fault_env.engine
    seed_stock(engine, {"SKU-A": 100_000})
    sent = _send_orders(fault_sender, order_payloads(total, "term"))
    assert fault_env.ready_count("orders") == total

    first = start_worker("first")
    assert wait_until(lambda: len(placed_ids(engine)) >= 20, WAIT, interval=0.005), first.describe()
    try:
        assert first.terminate(timeout=60) == 0, first.describe()
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker still running 60 s after SIGTERM; {first.describe()}")
    assert "Killing worker process" not in first.output()  # the stop was graceful, not a second signal

    placed = placed_ids(engine)
    settled = settled_count(engine)
    emailed = sum(_emails(smtp_server).values())
    depths = fault_env.depths()
    assert 0 < len(placed) < total, f"{len(placed)} of {total} placed: the stop did not land mid-load"
    # 0 lost at every step: what finished plus what went back to the queue is what was sent to it.
    assert len(placed) + _queued(depths, "orders") == total, (len(placed), depths)
    assert settled + _queued(depths, "inventory") == len(placed), (settled, depths)
    assert emailed + _queued(depths, "email") == settled, (emailed, depths)
    dead_letter_queues = ("orders.XQ", "inventory.XQ", "email.XQ")
    assert {queue: depths.get(queue, 0) for queue in dead_letter_queues} == dict.fromkeys(dead_letter_queues, 0)

    # Every finished message's span reached the receiver, exactly once; no span without an effect.
    assert otlp_receiver.errors == []
    spans = first.spans(otlp_receiver)
    for queue, finished in (("orders", len(placed)), ("inventory", settled), ("email", emailed)):
        processes = process_spans(spans, queue)
        assert len(processes) == finished, f"{queue}: {len(processes)} process spans for {finished} finished"
        assert len(set(_ids(processes))) == len(processes), f"{queue}: a message was processed twice"
        _assert_clean(processes)
    assert {sent[message_id] for message_id in _ids(process_spans(spans, "orders"))} == placed

    # A new worker completes everything that went back to the queue.
    second = start_worker("second")
    recipients = {f"c{index}@example.com" for index in range(total)}
    assert wait_until(lambda: settled_count(engine) == total, WAIT, interval=0.1), second.describe()
    assert smtp_server.wait_for(lambda _: recipients <= set(_emails(smtp_server)), WAIT), second.describe()
    assert second.terminate(timeout=60) == 0, second.describe()

    final = fault_env.depths()
    assert {queue: final.get(queue, 0) for queue in FLOW_QUEUES} == dict.fromkeys(FLOW_QUEUES, 0)
    assert placed_ids(engine) == set(sent.values())
    assert _emails(smtp_server) == Counter(recipients)  # one email each: nothing was processed twice
    all_spans = first.spans(otlp_receiver) + second.spans(otlp_receiver)
    orders_spans = process_spans(all_spans, "orders")
    assert sorted(_ids(orders_spans)) == sorted(sent), "each order message processed exactly once"
    for queue in ("orders", "inventory", "email"):
        _assert_clean(process_spans(all_spans, queue))
    assert not [span for span in all_spans if span.attributes.get(DUPLICATE)], "a graceful stop repeated a step"
    # What the first worker had prefetched but not started came back flagged as redelivered; none had taken effect.
    redelivered = [s for s in process_spans(second.spans(otlp_receiver), "orders") if s.attributes.get(REDELIVERED)]
    assert {sent[message_id] for message_id in _ids(redelivered)}.isdisjoint(placed)
    print(
        f"\nfault 1 (SIGTERM): sent={total} finished before stop: orders={len(placed)} inventory={settled} "
        f"emails={emailed}; still queued: orders={_queued(depths, 'orders')} inventory={_queued(depths, 'inventory')} "
        f"email={_queued(depths, 'email')}; dead-lettered=0 lost=0; process spans at stop: "
        f"{len(process_spans(spans, 'orders'))}/{len(process_spans(spans, 'inventory'))}/"
        f"{len(process_spans(spans, 'email'))}; after restart processed={total}, orders spans={len(orders_spans)}, "
        f"redelivered={len(redelivered)}"
    )


def _assert_exactly_once(fault_env: Stack, orders: list[dict[str, Any]], stock: dict[str, int]) -> Counter[str]:
    """Each order placed once with its lines once; reserved (one reservation set) or rejected; stock moved once."""
    wanted = {o["order_id"]: sorted((line["sku"], line["quantity"]) for line in o["lines"]) for o in orders}
    with session(fault_env.engine) as db:
        statuses = {order.id: order.status for order in db.scalars(select(Order))}
        lines: dict[str, list[tuple[str, int]]] = {}
        for line in db.scalars(select(OrderLine)):
            lines.setdefault(line.order_id, []).append((line.sku, line.quantity))
        reservations: dict[str, list[tuple[str, int]]] = {}
        for reservation in db.scalars(select(Reservation)):
            reservations.setdefault(reservation.order_id, []).append((reservation.sku, reservation.quantity))
        left = {product.sku: product.stock for product in db.scalars(select(Product))}
    assert set(statuses) == set(wanted)
    assert {order_id: sorted(entries) for order_id, entries in lines.items()} == wanted
    reserved = {order_id for order_id, status in statuses.items() if status == "reserved"}
    assert {order_id: sorted(entries) for order_id, entries in reservations.items()} == {
        order_id: wanted[order_id] for order_id in reserved
    }
    for sku, initial in stock.items():
        held = sum(quantity for entries in reservations.values() for (s, quantity) in entries if s == sku)
        assert initial - left[sku] == held, f"{sku}: {initial} - {left[sku]} != {held} reserved"
    return Counter(statuses.values())


def test_sigkill_mid_load_redelivers_flagged_and_effects_stay_exactly_once(
    fault_env: Stack,
    fault_sender: FlowSender,
    smtp_server: SmtpServer,
    start_worker: Callable[..., ServiceProcess],
    otlp_receiver: OtlpReceiver,
) -> None:
    """SIGKILL mid-load: after a restart every message is processed, redeliveries flagged, effects exactly once."""
    total = 200
    stock = {"SKU-A": 100_000, "SKU-B": 80}  # every order wants one SKU-B: exactly 80 can be reserved
    engine = fault_env.engine
    seed_stock(engine, stock)
    orders = order_payloads(total, "kill", scarce_sku="SKU-B")
    sent = _send_orders(fault_sender, orders)

    first = start_worker("first")
    # Kill once reservations are being made too, so orders and inventory both have work in flight.
    assert wait_until(lambda: settled_count(engine) >= 10, WAIT, interval=0.005), first.describe()
    backlog = fault_env.ready_count("orders")
    first.kill()  # SIGKILL to the whole tree: no ack, no span flush, transactions cut off mid-way
    killed_at = time.monotonic()
    placed_at_kill = placed_ids(engine)
    assert backlog > 0, "the kill did not land mid-load: the orders queue was already drained"
    # Whatever the first worker exported before dying: each such span stands for a committed effect.
    first_orders = process_spans(first.spans(otlp_receiver), "orders")
    assert {sent[message_id] for message_id in _ids(first_orders)} <= placed_at_kill

    second = start_worker("second")
    recipients = {o["customer_email"] for o in orders}
    assert wait_until(lambda: settled_count(engine) == total, WAIT, interval=0.1), second.describe()
    # Emails are at least once; wait for one per order so that nothing is in flight when the worker stops.
    assert smtp_server.wait_for(lambda _: recipients <= set(_emails(smtp_server)), WAIT), second.describe()
    assert second.terminate(timeout=60) == 0, second.describe()
    recovered_s = time.monotonic() - killed_at

    statuses = _assert_exactly_once(fault_env, orders, stock)
    assert statuses == {"reserved": stock["SKU-B"], "rejected": total - stock["SKU-B"]}, statuses
    final = fault_env.depths()
    assert {queue: final.get(queue, 0) for queue in FLOW_QUEUES} == dict.fromkeys(FLOW_QUEUES, 0)

    assert otlp_receiver.errors == []
    second_spans = second.spans(otlp_receiver)
    second_orders = process_spans(second_spans, "orders")
    for queue in ("orders", "inventory", "email"):
        _assert_clean(process_spans(second_spans, queue))
    assert len(set(_ids(second_orders))) == len(second_orders), "the restarted worker processed a message twice"
    # Every message that had not taken effect before the kill was processed after it, and its span is here.
    not_placed = {message_id for message_id, order_id in sent.items() if order_id not in placed_at_kill}
    assert not_placed <= set(_ids(second_orders)), f"{len(not_placed - set(_ids(second_orders)))} without a span"
    redelivered = [span for span in second_orders if span.attributes.get(REDELIVERED) is True]
    duplicates = [span for span in second_orders if span.attributes.get(DUPLICATE) is True]
    # The dead worker held a full prefetch window of orders unacked (a backlog was waiting): RabbitMQ
    # redelivered them, flagged.
    assert redelivered, f"backlog of {backlog} at the kill, yet no redelivered process span"
    for span in second_orders:
        if sent[span.attributes[MESSAGE_ID]] in placed_at_kill:
            # Committed before the kill, never acked: a flagged redelivery that changed nothing.
            assert span.attributes.get(REDELIVERED) is True, span
            assert span.attributes.get(DUPLICATE) is True, span
    # A place_order can only repeat itself through a redelivery (each was published once).
    assert all(span.attributes.get(REDELIVERED) is True for span in duplicates), duplicates

    inventory_redelivered = [
        s for s in process_spans(second_spans, "inventory") if s.attributes.get(REDELIVERED) is True
    ]
    email_redelivered = [s for s in process_spans(second_spans, "email") if s.attributes.get(REDELIVERED) is True]
    emails = _emails(smtp_server)
    print(
        f"\nfault 2 (SIGKILL): sent={total} placed before kill={len(placed_at_kill)} (backlog {backlog}); "
        f"processed={total} {dict(statuses)}; dead-lettered=0 still queued=0 lost=0; first worker spans exported "
        f"before the kill={len(first_orders)}; restarted worker: orders spans={len(second_orders)} "
        f"redelivered={len(redelivered)} (duplicates {len(duplicates)}), inventory redelivered="
        f"{len(inventory_redelivered)}, email redelivered={len(email_redelivered)}; emails={sum(emails.values())} "
        f"for {total} customers; recovered in {recovered_s:.1f} s"
    )
