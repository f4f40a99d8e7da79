"""Fault 6 (issue 7): 10,000 hostile messages from raw pika among valid orders; the worker lives and sorts them all.

The messages (``tests/faults/hostile_messages.py``: undecodable bodies, envelopes of the wrong types, payloads
the actor refuses, unknown actors, megabyte bodies and fields, trace context malformed or megabytes long) and
500 valid orders are shuffled and published to ``orders`` on one channel without confirms; the queue depth
then proves every one arrived. A real ``dramatiq actors`` worker tree consumes them. Then:

- the worker never went down: main process and worker processes alive throughout, the same PIDs;
- every hostile message is in ``orders.XQ`` (the exact bodies and headers, each once, with the reason in our
  ``tracedq-*`` headers: messaging/dead_lettering.py), except
  the valid orders under a hostile trace context, which are processed in a fresh trace (the project rule);
- each dead letter the worker could decode has a process span saying why (``dead_letter_reason``/``_error``);
  the others were logged ("Failed to decode message", ``message_rejected``);
- every valid order is placed and reserved once, and no refused order left a row.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from sqlalchemy import Engine, select

from otlp_receiver import OtlpReceiver, ReceivedSpan
from services.model import Order
from tests.environment.database import session
from tests.environment.polling import wait_until
from tests.environment.processes import ServiceProcess, child_pids
from tests.environment.sender import FlowSender
from tests.environment.stack import Stack
from tests.environment.worker import dramatiq_argv, worker_environment
from tests.faults.hostile_messages import Hostile, build_messages
from tests.order_flow import seed_stock, settled_count

pytestmark = [pytest.mark.faults, pytest.mark.rabbitmq, pytest.mark.timeout(360)]

HOSTILE = 10_000
PROCESSED_HOSTILE = 600  # valid orders under a hostile trace context
UNDECODABLE = 2_000
REJECTED = 1_600
VALID = 500
SEED = 6
WAIT = 240.0


@pytest.fixture
def engine(fault_env: Stack) -> Engine:
    seed_stock(fault_env.engine, {"SKU-A": 10**9})
    return fault_env.engine


@pytest.fixture
def worker(fault_env: Stack, engine: Engine, otlp_receiver: OtlpReceiver, tmp_path: Path) -> Iterator[ServiceProcess]:
    """A worker tree (2 processes, 8 threads) on ``orders`` and ``inventory``, started by the test; killed after."""
    variables = worker_environment(
        broker_url=fault_env.broker_url,
        database_url=fault_env.database_url,
        otlp_endpoint=otlp_receiver.endpoint,
        service_name="tracedq-fault-hostile",
        state_dir=tmp_path,
        LOG_LEVEL="WARNING",  # Dramatiq's INFO line per failure repeats each (megabyte) argument
        OTEL_BSP_MAX_QUEUE_SIZE="262144",  # every span counts here: nothing may be dropped
    )
    argv = [*dramatiq_argv(processes=2, threads=8), "--queues", "orders", "inventory"]
    process = ServiceProcess(argv, variables, tmp_path, name="worker-hostile")
    try:
        yield process
    finally:
        process.kill()


def _publish(fault_env: Stack, messages: list[Hostile]) -> None:
    """One channel, no publisher confirms: the queue depth checks arrival afterwards."""
    connection = fault_env.connect()
    try:
        channel = connection.channel()
        for message in messages:
            channel.basic_publish(
                exchange="",
                routing_key="orders",
                body=message.body,
                properties=pika.BasicProperties(
                    delivery_mode=2, content_type="application/json", headers=message.headers or None
                ),
            )
    finally:
        connection.close()


def _drain(fault_env: Stack, queue: str, expected: int) -> list[tuple[bytes, dict[str, Any]]]:
    """Consume ``queue`` (auto-ack) until it is empty: (body, AMQP headers) of each message."""
    drained: list[tuple[bytes, dict[str, Any]]] = []
    connection = fault_env.connect()
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=500)
        for method, properties, body in channel.consume(queue, auto_ack=True, inactivity_timeout=2):
            if method is None:
                break
            drained.append((body, dict(properties.headers or {})))
            if len(drained) > expected + 1_000:
                break
        channel.cancel()
    finally:
        connection.close()
    return drained


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _log_events(worker: ServiceProcess) -> Counter[str]:
    events: Counter[str] = Counter()
    for line in worker.output().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("event"), str):
            events[record["event"].split(" using encoder")[0]] += 1
    return events


def _assert_span(span: ReceivedSpan, message: Hostile) -> None:
    if message.fate == "dead":
        assert span.attributes.get("dramatiq.message.dead_lettered") is True, (message.kind, span)
        assert span.attributes["dramatiq.message.dead_letter_reason"] == message.reason, (message.kind, span)
        assert span.attributes["dramatiq.message.dead_letter_queue"] == "orders.XQ"
        assert message.error is not None
        assert message.error in span.attributes["dramatiq.message.dead_letter_error"], (message.kind, span)
        return
    assert span.attributes["dramatiq.message.outcome"] == "success", (message.kind, span)
    assert span.attributes.get("dramatiq.trace_context.invalid", False) is message.carrier_invalid, (message.kind, span)
    if message.parent is not None:
        assert (span.trace_id, span.parent_span_id) == message.parent, (message.kind, span)
    else:
        assert span.parent_span_id == "", (message.kind, span)  # a fresh trace
        assert span.trace_id not in message.body.decode(errors="replace"), (message.kind, span)


_EXCEPTION_TYPES = {"throws": "services.errors.InvalidPayload", "actor_not_found": "dramatiq.errors.ActorNotFound"}


def _assert_dead_letter_headers(message: Hostile, headers: dict[str, Any]) -> None:
    """The worker put it in the XQ itself, saying why (messaging/dead_lettering.py), with the headers it came with."""
    reason = {"undecodable": "undecodable", "rejected": "invalid_envelope"}.get(message.fate, message.reason)
    assert headers["tracedq-dead-letter-reason"] == reason, (message.kind, headers)
    assert headers["tracedq-queue"] == "orders" and "tracedq-dead-lettered-at" in headers
    assert headers["tracedq-attempts"] == (1 if reason == "throws" else 0), (message.kind, headers)
    assert headers.get("tracedq-exception-type") == _EXCEPTION_TYPES.get(reason or ""), (message.kind, headers)
    text = headers.get("tracedq-exception-message")
    if reason == "throws":  # InvalidPayload declares its text free of personal data: kept
        assert message.error is not None and message.error in text, (message.kind, headers)
    elif reason == "actor_not_found":  # its text is not declared safe and capture is off: type only
        assert text is None, (message.kind, headers)
    else:  # what is wrong with the envelope or body, never its values
        assert text, (message.kind, headers)
    assert "x-death" not in headers  # not RabbitMQ's dead-lettering, which would drop the reason
    for key, value in message.headers.items():
        assert headers[key] == value, (message.kind, key)


def test_hostile_messages_are_dead_lettered_with_a_reason_and_valid_ones_processed(
    fault_env: Stack, engine: Engine, worker: ServiceProcess, otlp_receiver: OtlpReceiver
) -> None:
    """10,000 hostile messages among 500 valid orders: no crash, each hostile one in the XQ or in a fresh trace."""
    messages = build_messages(
        SEED, hostile=HOSTILE, processed=PROCESSED_HOSTILE, undecodable=UNDECODABLE, rejected=REJECTED, valid=VALID
    )
    fates = Counter(m.fate for m in messages if m.kind != "valid")
    assert sum(fates.values()) == HOSTILE and len(messages) == HOSTILE + VALID
    dead = [m for m in messages if m.fate != "processed"]
    processed = [m for m in messages if m.fate == "processed"]

    started = time.monotonic()
    with FlowSender(fault_env.broker_url) as sender:
        for queue in ("orders", "inventory"):
            sender.declare(queue)  # with the worker's arguments: dead letters go to <queue>.XQ
    _publish(fault_env, messages)
    assert wait_until(lambda: fault_env.ready_count("orders") == len(messages), 60, interval=0.2)
    published = time.monotonic()

    worker.start()
    assert wait_until(lambda: len(child_pids(worker)) == 2, 60, interval=0.1), worker.describe()
    pids = child_pids(worker)

    def done() -> bool:
        assert worker.running and child_pids(worker) == pids, worker.describe()  # nothing crashed or restarted
        return (
            fault_env.ready_count("orders.XQ") >= len(dead)
            and settled_count(engine) >= len(processed)
            and fault_env.ready_count("orders") == 0
        )

    assert wait_until(done, WAIT, interval=0.5), (fault_env.depths(), settled_count(engine), worker.describe())
    consumed = time.monotonic()
    assert worker.terminate(timeout=120) == 0, worker.describe()  # a graceful stop flushes the spans

    # Every queue settled: the hostile messages in the XQ, nothing left or lost elsewhere.
    depths = fault_env.depths()
    assert {q: n for q, n in depths.items() if n and q != "email"} == {"orders.XQ": len(dead)}, depths
    assert depths.get("email", 0) == len(processed)  # one notify_customer per order, not consumed here
    letters = _drain(fault_env, "orders.XQ", len(dead))
    assert Counter(_digest(body) for body, _ in letters) == Counter(_digest(m.body) for m in dead)
    by_digest = {_digest(m.body): m for m in dead}
    for body, headers in letters:
        _assert_dead_letter_headers(by_digest[_digest(body)], headers)

    # Spans: why each decodable dead letter died; each processed one in the trace it deserves.
    assert otlp_receiver.errors == []
    spans: dict[str, list[ReceivedSpan]] = {}
    for span in otlp_receiver.spans:
        if span.name == "process orders":
            spans.setdefault(span.attributes["messaging.message.id"], []).append(span)
    for message in messages:
        found = spans.get(message.message_id or "", [])
        if message.fate in ("undecodable", "rejected"):
            assert found == [], (message.kind, found)  # Dramatiq's hooks never saw it
        else:
            assert len(found) == 1, (message.kind, message.message_id, found)
            _assert_span(found[0], message)
    events = _log_events(worker)
    assert events["Failed to decode message"] == fates["undecodable"], events
    assert events["message_rejected"] == fates["rejected"], events

    # The database: every processed order once, reserved; nothing from a refused message.
    with session(engine) as db:
        statuses = dict(db.execute(select(Order.id, Order.status)).all())
    assert statuses == {m.order_id: "reserved" for m in processed}

    kinds = Counter(m.kind.split("/")[0] for m in messages)
    print(
        f"\nfault 6: published {len(messages)} ({HOSTILE} hostile + {VALID} valid) in {published - started:.1f} s; "
        f"consumed in {consumed - published:.1f} s; wall {time.monotonic() - started:.1f} s; {dict(kinds)}; "
        f"dead-lettered {len(letters)} (undecodable {fates['undecodable']}, rejected {fates['rejected']}, "
        f"refused by the actor {fates['dead']}); processed {len(statuses)} ({fates['processed']} hostile carriers, "
        f"{VALID} valid); lost 0; worker PIDs {sorted(pids)} unchanged"
    )
