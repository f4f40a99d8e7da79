"""Fault 5 (issue 7): PostgreSQL unreachable for a while; order messages retry with backoff and succeed when it returns.

A real ``dramatiq actors`` worker reaches PostgreSQL only through a loopback :class:`TcpProxy`. Orders are sent
before, during and after an outage made by stopping the proxy (every open database connection is dropped and new
ones are refused) for :data:`OUTAGE_S` seconds. The orders sent meanwhile fail with the database error, go back
through ``orders.DQ`` with Dramatiq's exponential backoff, and are placed and reserved once the proxy listens
again: each order's effects exist exactly once, nothing is dead-lettered, and the retry chain is on the spans.

Backoff: the actors retry with ``min_backoff=1 s`` and ``max_backoff=5 min`` (actors/orders.py). Dramatiq's
``Retries`` resolves both per message first, so the test's orders carry ``min_backoff``/``max_backoff`` message
options (:data:`FAST_RETRIES`) to keep the run short; the worker and actors are the production ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from opentelemetry.trace import StatusCode
from sqlalchemy import Engine, select

from otlp_receiver import OtlpReceiver, ReceivedSpan
from services.model import Order, OrderLine, ProcessedMessage, Product, Reservation
from tests.environment.database import session
from tests.environment.polling import wait_until
from tests.environment.processes import PROJECT_ROOT, ServiceProcess, child_pids
from tests.environment.sender import FlowSender
from tests.environment.servers import PG_HOST, PG_PORT
from tests.environment.stack import Stack
from tests.environment.worker import dramatiq_argv, worker_environment
from tests.order_flow import placed_ids, seed_stock, settled_count
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.faults, pytest.mark.rabbitmq, pytest.mark.timeout(150)]

WAIT = 60.0
OUTAGE_S = 5.0
#: Dramatiq message options: backoff 300 ms doubling (with jitter) up to 3 s, instead of the actors' 1 s to 5 min.
#: Ten retries then take at least 12 s, well beyond the outage, so no order can exhaust them.
FAST_RETRIES = {"min_backoff": 300, "max_backoff": 3_000}
STOCK = 100_000
BATCHES = {"before": 15, "during": 20, "after": 10}


@pytest.fixture
def engine(fault_stack: Stack) -> Engine:
    """The test's own database, straight to PostgreSQL (never through the proxy), schema made by the real command."""
    command_env = {**os.environ, "DATABASE_URL": fault_stack.database_url, "BROKER_URL": "memory://"}
    done = subprocess.run(
        [sys.executable, "-m", "actors.db", "migrate"],
        cwd=PROJECT_ROOT,
        env=command_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seed_stock(fault_stack.engine, {"SKU-A": STOCK})
    return fault_stack.engine


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    """127.0.0.1:<port> -> PostgreSQL; ``stop()`` is the outage."""
    with TcpProxy((PG_HOST, PG_PORT)) as proxy:
        yield proxy


@pytest.fixture
def worker(
    fault_stack: Stack, engine: Engine, pg_proxy: TcpProxy, otlp_receiver: OtlpReceiver, tmp_path: Path
) -> Iterator[ServiceProcess]:
    """The real worker on the order queues, its database URL pointing at the proxy; SIGKILLed at teardown."""
    variables = worker_environment(
        broker_url=fault_stack.broker_url,
        database_url=fault_stack.database_url_via(pg_proxy.port),
        otlp_endpoint=otlp_receiver.endpoint,
        service_name="tracedq-fault-pgdown",
        state_dir=tmp_path,
        EMAIL_RATE_LIMIT="100000",
    )
    argv = [*dramatiq_argv(processes=1, threads=4), "--queues", "orders", "inventory"]
    process = ServiceProcess(argv, variables, tmp_path, name="worker-pgdown").start()
    try:
        yield process
    finally:
        process.kill()


def _orders(batch: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "order_id": f"{batch}-{index}",
            "customer_email": f"{batch}{index}@example.com",
            "lines": [{"sku": "SKU-A", "quantity": index % 3 + 1}],
        }
        for index in range(count)
    ]


def _send(sender: FlowSender, payload: dict[str, Any]) -> str:
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="orders", actor_name="place_order", args=(payload,), kwargs={}, options=dict(FAST_RETRIES)
    )
    return sender.broker.enqueue(message).message_id


def _assert_effects_exactly_once(engine: Engine, orders: list[dict[str, Any]]) -> None:
    """Every order placed once and reserved once: one row, its lines, one reservation per line, stock moved once."""
    wanted = {o["order_id"]: sorted((line["sku"], line["quantity"]) for line in o["lines"]) for o in orders}
    with session(engine) as db:
        statuses = {order.id: order.status for order in db.scalars(select(Order))}
        lines: dict[str, list[tuple[str, int]]] = {}
        for line in db.scalars(select(OrderLine)):
            lines.setdefault(line.order_id, []).append((line.sku, line.quantity))
        reservations: dict[str, list[tuple[str, int]]] = {}
        for reservation in db.scalars(select(Reservation)):
            reservations.setdefault(reservation.order_id, []).append((reservation.sku, reservation.quantity))
        keys = Counter(db.scalars(select(ProcessedMessage.key)))
        stock = db.scalar(select(Product.stock).where(Product.sku == "SKU-A"))
    assert statuses == dict.fromkeys(wanted, "reserved")
    assert {key: sorted(value) for key, value in lines.items()} == wanted
    assert {key: sorted(value) for key, value in reservations.items()} == wanted
    assert keys == Counter(f"{step}:{order_id}" for order_id in wanted for step in ("place_order", "reserve_inventory"))
    assert STOCK - stock == sum(qty for entries in wanted.values() for _, qty in entries)


def _process_spans(spans: list[ReceivedSpan], message_id: str) -> list[ReceivedSpan]:
    found = [s for s in spans if s.name == "process orders" and s.attributes["messaging.message.id"] == message_id]
    return sorted(found, key=lambda span: span.attributes["dramatiq.message.retries"])


def test_orders_retry_through_a_database_outage_and_each_takes_effect_once(
    fault_stack: Stack,
    engine: Engine,
    pg_proxy: TcpProxy,
    fault_sender: FlowSender,
    worker: ServiceProcess,
    otlp_receiver: OtlpReceiver,
) -> None:
    """Orders sent while PostgreSQL is unreachable retry with backoff, then all succeed once; none is dead-lettered."""
    started = time.monotonic()
    fault_sender.declare("orders")
    assert wait_until(lambda: fault_stack.consumer_count("orders") >= 1, WAIT, interval=0.2), worker.describe()
    worker_pids = child_pids(worker)
    orders = {batch: _orders(batch, count) for batch, count in BATCHES.items()}

    ids = {"before": [_send(fault_sender, payload) for payload in orders["before"]]}
    assert wait_until(lambda: settled_count(engine) == BATCHES["before"], WAIT, interval=0.1), worker.describe()

    pg_proxy.stop()  # the outage: pooled connections dropped, new ones refused
    cut = time.monotonic()
    ids["during"] = []
    for payload in orders["during"]:
        ids["during"].append(_send(fault_sender, payload))
        time.sleep(OUTAGE_S / 2 / BATCHES["during"])  # spread over the first half of the outage
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - cut)))
    # Straight to PostgreSQL (not through the proxy): nothing sent during the outage got in.
    assert placed_ids(engine) == {o["order_id"] for o in orders["before"]}
    assert worker.running, worker.describe()
    pg_proxy.start()
    outage = time.monotonic() - cut

    ids["after"] = [_send(fault_sender, payload) for payload in orders["after"]]
    everything = [payload for batch in BATCHES for payload in orders[batch]]
    assert wait_until(lambda: settled_count(engine) == len(everything), WAIT, interval=0.2), worker.describe()
    assert worker.running and child_pids(worker) == worker_pids, worker.describe()
    assert worker.terminate() == 0, worker.describe()  # a graceful stop flushes the worker's spans
    wall = time.monotonic() - started

    _assert_effects_exactly_once(engine, everything)
    for queue in ("orders", "orders.DQ", "orders.XQ", "inventory", "inventory.DQ", "inventory.XQ"):
        assert fault_stack.ready_count(queue) == 0, queue  # nothing dead-lettered, nothing left behind

    assert otlp_receiver.errors == []
    spans = otlp_receiver.spans
    assert [s for s in spans if s.attributes.get("dramatiq.message.dead_lettered")] == []
    assert [s for s in spans if s.attributes.get("dramatiq.message.outcome") == "lost"] == []
    retries: dict[str, int] = {}
    error_types: Counter[str] = Counter()
    for message_id in [*ids["before"], *ids["during"], *ids["after"]]:
        attempts = _process_spans(spans, message_id)
        assert [s.attributes["dramatiq.message.retries"] for s in attempts] == list(range(len(attempts))), attempts
        *failed, last = attempts
        assert last.attributes["dramatiq.message.outcome"] == "success", last
        for attempt in failed:
            # The database error is retried as Dramatiq retries any exception outside the actor's throws.
            assert attempt.attributes["dramatiq.message.outcome"] == "retrying", attempt
            assert attempt.status_code is StatusCode.ERROR, attempt
            assert 0 < attempt.attributes["dramatiq.retry.delay_ms"] <= FAST_RETRIES["max_backoff"], attempt
            error_types[attempt.attributes["error.type"]] += 1
        retries[message_id] = len(failed)
    assert all(retries[message_id] >= 1 for message_id in ids["during"]), retries  # each one hit the outage
    assert set(error_types) <= {"sqlalchemy.exc.OperationalError"}, error_types
    print(
        f"\nfault 5: orders sent {len(everything)} (before/during/after outage {BATCHES}), placed and reserved "
        f"{settled_count(engine)}, dead-lettered 0, lost 0; outage {outage:.1f} s; retries {sum(retries.values())} "
        f"(during-outage orders: min {min(retries[i] for i in ids['during'])}, "
        f"max {max(retries[i] for i in ids['during'])}); error types {dict(error_types)}; wall {wall:.1f} s"
    )
