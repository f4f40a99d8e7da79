"""Fault 3 of issue 7: RabbitMQ force-closes every connection (``rabbitmqctl close_all_connections``) mid-load.

A real ``dramatiq actors`` worker consumes the order flow while the real producer API (``uvicorn api.main:app``)
receives a steady stream of ``POST /orders``. Twice during the stream, every connection of the test's vhost is
force-closed: the worker's consumers and publishers and the API's publishers all lose theirs at once.

Neither process is restarted. The contract: the worker and the API reconnect by themselves; every POST answered
202 is processed (its order is in the database); every POST answered 503 was not queued; nothing else is
answered; no message is lost, dead-lettered or left in a queue. Messages the worker held unacked when its
connection died come back flagged ``dramatiq.message.redelivered`` and, if their effect was already committed,
change nothing (``dramatiq.message.duplicate``).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from opentelemetry.trace import StatusCode

from otlp_receiver import OtlpReceiver
from tests.api_support import AUTH
from tests.environment.polling import wait_until
from tests.environment.processes import ServiceProcess
from tests.environment.smtp import SmtpServer
from tests.environment.stack import Stack
from tests.order_flow import FLOW_QUEUES, placed_ids, seed_stock, settled_count
from tests.received_spans import process_spans

pytestmark = [pytest.mark.faults, pytest.mark.rabbitmq, pytest.mark.timeout(120)]

WAIT = 60.0
INTERVAL = 0.05  # one POST every 50 ms (at most; slower while a request waits for a reconnect)
CLOSES = 2
PER_PHASE = 30  # POSTs answered before each close and after the last one
REDELIVERED = "dramatiq.message.redelivered"
DUPLICATE = "dramatiq.message.duplicate"
PUBLISH_ATTEMPTS = "dramatiq.publish.attempts"


@dataclass(frozen=True)
class Answer:
    """One POST /orders and what the API said."""

    order_id: str
    status: int  # 0: no HTTP answer at all
    body: dict[str, object]
    at: float


class Producer:
    """POSTs a new order every ``INTERVAL`` seconds, one at a time, from a thread, until stopped."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="order-producer", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "a POST hung for a minute"

    def count(self) -> int:
        with self._lock:
            return len(self.answers)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30, headers=AUTH) as client:
            index = 0
            next_at = time.monotonic()
            while not self._stop.is_set():
                order_id = f"conn-{index}"
                order = {
                    "order_id": order_id,
                    "customer_email": f"c{index}@example.com",
                    "lines": [{"sku": "SKU-A", "quantity": 1}],
                }
                try:
                    response = client.post("/orders", json=order)
                    answer = Answer(order_id, response.status_code, response.json(), time.monotonic())
                except (httpx.HTTPError, ValueError) as exc:
                    answer = Answer(order_id, 0, {"error": repr(exc)}, time.monotonic())
                with self._lock:
                    self.answers.append(answer)
                index += 1
                next_at = max(next_at + INTERVAL, time.monotonic())
                self._stop.wait(max(0.0, next_at - time.monotonic()))


def test_forced_connection_close_mid_load_loses_no_message_and_no_publish(
    fault_env: Stack,
    smtp_server: SmtpServer,
    start_worker: Callable[..., ServiceProcess],
    start_api: Callable[..., ServiceProcess],
    otlp_receiver: OtlpReceiver,
) -> None:
    """Connections force-closed twice under load: both processes reconnect; 202 -> processed, 503 -> not queued."""
    engine = fault_env.engine
    started = time.monotonic()
    marks: dict[str, float] = {}
    seed_stock(engine, {"SKU-A": 1_000_000})
    worker = start_worker("worker")
    api = start_api()
    # The worker consumes before the stream starts: orders are processed while they arrive.
    assert wait_until(lambda: _consumers(fault_env, "orders") >= 1, WAIT, interval=0.2), worker.describe()

    marks["processes up"] = time.monotonic() - started
    producer = Producer(api.base_url)
    producer.start()
    closes: list[tuple[float, int]] = []
    try:
        for _ in range(CLOSES):
            # Mid-load: the API is publishing and the worker has placed orders since the last close.
            target, placed_before = producer.count() + PER_PHASE, len(placed_ids(engine))
            assert wait_until(lambda: producer.count() >= target, WAIT), api.describe()  # noqa: B023
            assert wait_until(lambda: len(placed_ids(engine)) > placed_before, WAIT), worker.describe()  # noqa: B023
            closed_at = time.monotonic()
            closes.append((closed_at, fault_env.close_all_connections("fault test")))
        target = producer.count() + PER_PHASE
        assert wait_until(lambda: producer.count() >= target, WAIT), api.describe()
    finally:
        producer.stop()

    marks["stream done"] = time.monotonic() - started
    answers = producer.answers
    statuses = Counter(answer.status for answer in answers)
    assert set(statuses) <= {202, 503}, [a for a in answers if a.status not in (202, 503)][:5]
    accepted = {answer.order_id for answer in answers if answer.status == 202}
    refused = {answer.order_id for answer in answers if answer.status == 503}
    assert all(a.body["error"]["code"] == "broker_unavailable" for a in answers if a.status == 503)
    # Each close hit the worker's connections and the API's (more than one connection each).
    assert all(closed >= 2 for _, closed in closes), closes
    # The API reconnected by itself: it accepted orders after each close.
    for closed_at, _ in closes:
        assert any(a.status == 202 and a.at > closed_at for a in answers), f"no 202 after the close at {closed_at}"

    # Every accepted order is processed by the same worker process, which reconnected by itself.
    assert wait_until(lambda: accepted <= placed_ids(engine), WAIT, interval=0.2), (
        f"{len(accepted - placed_ids(engine))} accepted orders never placed; {worker.describe()}"
    )
    assert wait_until(lambda: settled_count(engine) == len(placed_ids(engine)), WAIT, interval=0.2), worker.describe()
    recipients = {f"c{order_id.split('-')[1]}@example.com" for order_id in accepted}
    assert smtp_server.wait_for(lambda ms: recipients <= {r for m in ms for r in m.rcpt_tos}, WAIT), worker.describe()
    marks["all processed"] = time.monotonic() - started
    assert worker.running, worker.describe()
    assert api.running, api.describe()
    assert "Consumer encountered a connection error" in worker.output()  # the close did reach the consumers
    assert "CONNECTION_FORCED - fault test" in api.output()  # and the API's publishing connection

    # Nothing left anywhere, so a 503'd order can no longer turn up: it was not queued.
    depths = fault_env.depths()
    assert {queue: depths.get(queue, 0) for queue in FLOW_QUEUES} == dict.fromkeys(FLOW_QUEUES, 0)
    placed = placed_ids(engine)
    assert placed == accepted, f"placed but refused: {sorted(placed & refused)}; unknown: {sorted(placed - accepted)}"

    assert worker.terminate(timeout=60) == 0, worker.describe()  # flushes the worker's spans
    # uvicorn (0.29+) re-raises SIGTERM once its graceful shutdown is done: -15 is its clean exit.
    assert api.terminate(timeout=30) in (0, -signal.SIGTERM), api.describe()
    assert "Finished server process" in api.output(), api.describe()
    marks["stopped"] = time.monotonic() - started
    assert otlp_receiver.errors == []
    worker_spans = worker.spans(otlp_receiver)
    orders_spans = process_spans(worker_spans, "orders")
    accepted_ids = {str(a.body["message_id"]) for a in answers if a.status == 202}
    assert accepted_ids <= {span.attributes["messaging.message.id"] for span in orders_spans}
    assert all(span.attributes.get("dramatiq.message.outcome") == "success" for span in orders_spans)
    assert not [span for span in orders_spans if span.status_code is StatusCode.ERROR]
    redelivered = [span for span in orders_spans if span.attributes.get(REDELIVERED) is True]
    duplicates = [span for span in orders_spans if span.attributes.get(DUPLICATE) is True]
    all_process = [span for span in worker_spans if span.name.startswith("process ")]
    api_retried = [s for s in api.spans(otlp_receiver) if (s.attributes.get(PUBLISH_ATTEMPTS) or 0) > 1]
    worker_retried = [s for s in worker_spans if (s.attributes.get(PUBLISH_ATTEMPTS) or 0) > 1]
    print(
        f"\nfault 3 (close_all_connections x{len(closes)}, closed {[closed for _, closed in closes]} connections): "
        f"POSTs={len(answers)} 202={statuses[202]} 503={statuses[503]} other=0; processed={len(placed)} "
        f"(every 202), 503 queued=0; dead-lettered=0 still queued=0 lost=0; process spans: orders="
        f"{len(orders_spans)} (redelivered {len(redelivered)}, duplicate {len(duplicates)}), all queues "
        f"{len(all_process)} (redelivered {sum(1 for s in all_process if s.attributes.get(REDELIVERED))}); "
        f"publishes confirmed on a retry after the reconnect: API {len(api_retried)}, worker {len(worker_retried)}; "
        f"timeline (s): {', '.join(f'{name} {at:.1f}' for name, at in marks.items())}"
    )


def _consumers(fault_env: Stack, queue: str) -> int:
    try:
        connection = fault_env.connect()
    except Exception:
        return 0
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.consumer_count)
    except Exception:  # not declared yet
        return 0
    finally:
        if connection.is_open:
            connection.close()
