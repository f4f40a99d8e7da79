"""Exact span trees on a real Redis broker: success, retry, delay and dead letter (Redis on loopback).

Each test gets its own Redis ``namespace`` (every key Dramatiq writes starts with it), so parallel runs
never share a queue, and the namespace's keys are deleted afterwards.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import default_middleware
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from observability import Tracing, install
from observability.personal_data import HIDDEN
from tests.environment.polling import wait_until
from tests.environment.servers import REDIS_URL, require_redis
from tests.spans import is_child, named, one, stable_attributes, trace_id

pytestmark = pytest.mark.redis
tracer = trace.get_tracer("tests")

_SERVER = urlparse(REDIS_URL)


def attributes(operation: str, queue: str, **extra: Any) -> dict[str, Any]:
    """The attributes every span on this broker carries, plus ``extra``."""
    return {
        "messaging.system": "redis",
        "messaging.operation.type": {"nack": "settle"}.get(operation, operation),
        "messaging.operation.name": operation,
        "messaging.destination.name": queue,
        "server.address": _SERVER.hostname,
        "server.port": _SERVER.port or 6379,
        **extra,
    }


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    require_redis()
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def redis_broker(span_exporter: InMemorySpanExporter, redis_client: redis.Redis) -> Iterator[RedisBroker]:
    """A RedisBroker in a namespace of its own, traced like production; its keys are deleted afterwards."""
    namespace = f"tracedq-test-{uuid.uuid4().hex}"
    broker = RedisBroker(url=REDIS_URL, namespace=namespace, middleware=[f() for f in default_middleware])
    install(broker, Tracing())
    broker.emit_after("process_boot")
    yield broker
    broker.close()
    keys = list(redis_client.scan_iter(match=f"{namespace}:*"))
    if keys:
        redis_client.delete(*keys)
    broker.client.close()


def run_until(broker: RedisBroker, condition: Callable[[], bool], timeout: float = 10) -> None:
    """Run a worker (polling Redis at least every 100 ms) until ``condition`` holds, then stop it."""
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=1)
    worker.start()
    try:
        assert wait_until(condition, timeout=timeout, interval=0.01)
    finally:
        worker.stop()


def count(exporter: InMemorySpanExporter, name: str) -> Callable[[], int]:
    return lambda: len(named(exporter.get_finished_spans(), name))


def process_attributes(actor: str, *, retries: int = 0, max_retries: int = 20, **extra: Any) -> dict[str, Any]:
    own = {
        "dramatiq.actor.name": actor,
        "dramatiq.message.retries": retries,
        "dramatiq.message.max_retries": max_retries,
    }
    return attributes("process", "work", **own, **extra)


def sorted_names(spans: tuple[ReadableSpan, ...]) -> list[str]:
    return sorted(span.name for span in spans)


def test_success_is_request_send_process_with_redis_attributes(
    redis_broker: RedisBroker, span_exporter: InMemorySpanExporter
) -> None:
    """request -> send work (PRODUCER) -> (Redis) -> process work (CONSUMER), one trace, exact attributes."""
    done = threading.Event()

    @dramatiq.actor(actor_name="greet", queue_name="work", broker=redis_broker)
    def greet() -> None:
        done.set()

    with tracer.start_as_current_span("request"):
        message = greet.send()
    run_until(redis_broker, lambda: count(span_exporter, "process work")() == 1)

    assert done.is_set()
    spans = span_exporter.get_finished_spans()
    assert sorted_names(spans) == ["process work", "request", "send work"]
    request, send, process = (one(spans, n) for n in ("request", "send work", "process work"))
    assert (send.kind, process.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert is_child(send, request) and is_child(process, send)
    assert stable_attributes(send) == attributes("send", "work", **{"dramatiq.actor.name": "greet"})
    assert stable_attributes(process) == process_attributes("greet", **{"dramatiq.message.outcome": "success"})
    assert send.attributes["messaging.message.id"] == process.attributes["messaging.message.id"] == message.message_id
    assert process.attributes["dramatiq.message.queue_wait_ms"] >= 0
    assert process.status.status_code is StatusCode.UNSET


def test_retry_then_success_chains_every_hop_in_one_trace(
    redis_broker: RedisBroker, span_exporter: InMemorySpanExporter
) -> None:
    """A failure retried by Retries: process (retrying) -> send work.DQ -> hop send work -> process (success)."""
    attempts: list[int] = []

    @dramatiq.actor(
        actor_name="flaky", queue_name="work", broker=redis_broker, max_retries=1, min_backoff=20, max_backoff=20
    )
    def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("transient")

    flaky.send()
    run_until(redis_broker, lambda: count(span_exporter, "process work")() == 2)

    spans = span_exporter.get_finished_spans()
    assert sorted_names(spans) == ["process work", "process work", "send work", "send work", "send work.DQ"]
    first, second = sorted(named(spans, "process work"), key=lambda s: s.attributes["dramatiq.message.retries"])
    send, hop = sorted(named(spans, "send work"), key=lambda s: "dramatiq.message.delayed_hop" in s.attributes)
    retry_send = one(spans, "send work.DQ")
    assert [s.kind for s in (send, first, retry_send, hop, second)] == [
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
        SpanKind.PRODUCER,
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
    ]
    assert send.parent is None
    assert is_child(first, send) and is_child(retry_send, first) and is_child(hop, retry_send)
    assert is_child(second, hop)
    assert len({trace_id(s) for s in spans}) == 1

    # Retries jitters the backoff: 20 ms capped, so 10..20 ms, and both spans name the same value.
    delay = retry_send.attributes["dramatiq.message.delay_ms"]
    assert 10 <= delay <= 20 and first.attributes["dramatiq.retry.delay_ms"] == delay
    assert first.status.status_code is StatusCode.ERROR
    assert [event.name for event in first.events] == ["exception"]
    assert stable_attributes(first) == process_attributes(
        "flaky",
        max_retries=1,
        **{"error.type": "RuntimeError", "dramatiq.message.outcome": "retrying", "dramatiq.retry.delay_ms": delay},
    )
    assert stable_attributes(retry_send) == attributes(
        "send", "work.DQ", **{"dramatiq.actor.name": "flaky", "dramatiq.message.delay_ms": delay}
    )
    assert stable_attributes(hop) == attributes(
        "send", "work", **{"dramatiq.actor.name": "flaky", "dramatiq.message.delayed_hop": True}
    )
    assert stable_attributes(second) == process_attributes(
        "flaky", retries=1, max_retries=1, **{"dramatiq.message.outcome": "success"}
    )
    assert second.status.status_code is StatusCode.UNSET
    assert len({s.attributes["messaging.message.id"] for s in spans}) == 1


def test_delayed_message_waits_in_the_delay_queue_then_hops(
    redis_broker: RedisBroker, redis_client: redis.Redis, span_exporter: InMemorySpanExporter
) -> None:
    """A delay shows on Redis exactly as on RabbitMQ: send work.DQ -> hop send work -> process work.

    Redis has no broker-side delay (no TTL, no dead-letter exchange): RedisBroker pushes the message,
    with an ``eta`` option, onto the ``<namespace>:work.DQ`` list. The worker's consumer for that list
    fetches it, holds it in memory until the eta, then re-enqueues it on ``work`` (the hop, on the
    worker) and acks it on ``work.DQ``. So the tree has the same three spans as on RabbitMQ, the hop
    is a child of the delayed send, and the process span starts no earlier than the delay.
    """

    @dramatiq.actor(actor_name="later", queue_name="work", broker=redis_broker)
    def later() -> None:
        pass

    delay = 300
    message = later.send_with_options(delay=delay)
    namespace = redis_broker.namespace
    # Before any worker runs, the message sits on the delay list, not on the queue.
    assert (redis_client.llen(f"{namespace}:work.DQ"), redis_client.llen(f"{namespace}:work")) == (1, 0)
    run_until(redis_broker, lambda: count(span_exporter, "process work")() == 1)

    spans = span_exporter.get_finished_spans()
    assert sorted_names(spans) == ["process work", "send work", "send work.DQ"]
    delayed, hop, process = (one(spans, n) for n in ("send work.DQ", "send work", "process work"))
    assert (delayed.kind, hop.kind, process.kind) == (SpanKind.PRODUCER, SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert delayed.parent is None and is_child(hop, delayed) and is_child(process, hop)
    assert stable_attributes(delayed) == attributes(
        "send", "work.DQ", **{"dramatiq.actor.name": "later", "dramatiq.message.delay_ms": delay}
    )
    assert stable_attributes(hop) == attributes(
        "send", "work", **{"dramatiq.actor.name": "later", "dramatiq.message.delayed_hop": True}
    )
    assert stable_attributes(process) == process_attributes("later", **{"dramatiq.message.outcome": "success"})
    eta = hop.attributes["dramatiq.message.eta"]
    assert eta == message.options["eta"]
    assert process.start_time >= delayed.start_time + delay * 1_000_000
    assert hop.start_time >= eta * 1_000_000
    assert {s.attributes["messaging.message.id"] for s in spans} == {message.message_id}


def test_dead_letter_gets_a_nack_span_and_lands_in_the_xq_with_its_trace(
    redis_broker: RedisBroker, redis_client: redis.Redis, span_exporter: InMemorySpanExporter
) -> None:
    """Retries exhausted: process (dead_lettered) -> nack work (CLIENT); the XQ copy carries the trace.

    The worker, not the broker, emits ``before_nack``/``after_nack``, so Redis gets the nack span too.
    RedisBroker's nack moves the message into the ``<namespace>:work.XQ`` sorted set (its body in
    ``work.XQ.msgs``), kept for ``dead_message_ttl``.
    """

    @dramatiq.actor(actor_name="doomed", queue_name="work", broker=redis_broker, max_retries=0)
    def doomed() -> None:
        raise RuntimeError("cannot")

    message = doomed.send()
    run_until(redis_broker, lambda: count(span_exporter, "nack work")() == 1)

    spans = span_exporter.get_finished_spans()
    assert sorted_names(spans) == ["nack work", "process work", "send work"]
    send, process, nack = (one(spans, n) for n in ("send work", "process work", "nack work"))
    assert (send.kind, process.kind, nack.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.CLIENT)
    assert is_child(process, send) and is_child(nack, process)
    assert process.status.status_code is StatusCode.ERROR
    assert process.status.description == f"RuntimeError: {HIDDEN}"
    assert [event.name for event in process.events] == ["exception"]
    assert stable_attributes(process) == process_attributes(
        "doomed",
        max_retries=0,
        **{
            "error.type": "RuntimeError",
            "dramatiq.message.outcome": "dead_lettered",
            "dramatiq.message.dead_lettered": True,
            "dramatiq.message.dead_letter_reason": "retries_exhausted",
            "dramatiq.message.dead_letter_queue": "work.XQ",
            "dramatiq.message.dead_letter_error": f"RuntimeError: {HIDDEN}",  # texts may hold personal data
        },
    )
    assert stable_attributes(nack) == attributes("nack", "work", **{"dramatiq.message.dead_letter_queue": "work.XQ"})
    assert nack.attributes["messaging.message.id"] == message.message_id

    namespace = redis_broker.namespace
    assert redis_client.zcard(f"{namespace}:work.XQ") == 1
    [body] = redis_client.hvals(f"{namespace}:work.XQ.msgs")
    dead = json.loads(body)
    assert dead["message_id"] == message.message_id
    _, dead_trace_id, dead_parent_id, _ = dead["options"]["trace_context"]["traceparent"].split("-")
    assert (dead_trace_id, dead_parent_id) == (f"{trace_id(send):032x}", f"{send.context.span_id:016x}")
