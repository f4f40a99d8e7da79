"""Exact span trees for every path a message can take through a Dramatiq worker (StubBroker)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import SkipMessage
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from observability.personal_data import HIDDEN
from tests.conftest import drain, make_stub_broker
from tests.spans import is_child, named, one, stable_attributes, trace_id

tracer = trace.get_tracer("tests")


class BusinessError(Exception):
    """An expected, non-retriable failure (listed in ``throws``)."""


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll until ``condition`` holds: hooks after the ack (nack spans) may finish after ``join``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def run(broker: StubBroker, worker: dramatiq.Worker, *queues: str, fail_fast: bool = True) -> None:
    for queue in queues:
        broker.join(queue, fail_fast=fail_fast)
    worker.join()


def process_attributes(queue: str, actor: str, *, retries: int = 0, max_retries: int = 20, **extra: Any) -> dict:
    return {
        "messaging.system": "dramatiq",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": queue,
        "dramatiq.actor.name": actor,
        "dramatiq.message.retries": retries,
        "dramatiq.message.max_retries": max_retries,
        **extra,
    }


def send_attributes(queue: str, actor: str, **extra: Any) -> dict:
    return {
        "messaging.system": "dramatiq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": queue,
        "dramatiq.actor.name": actor,
        **extra,
    }


def test_success_builds_request_send_process_inner_chain(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """A message sent inside a request span: request -> send -> process -> the actor's own span."""

    @dramatiq.actor(actor_name="work", queue_name="work")
    def work(x: int) -> None:
        with tracer.start_as_current_span("inner"):
            pass

    with tracer.start_as_current_span("request"):
        message = work.send(1)
    run(stub_broker, stub_worker, "work")

    spans = span_exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == ["inner", "process work", "request", "send work"]
    request, send, process, inner = (one(spans, n) for n in ("request", "send work", "process work", "inner"))
    assert (send.kind, process.kind, inner.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.INTERNAL)
    assert is_child(send, request) and is_child(process, send) and is_child(inner, process)
    assert stable_attributes(send) == send_attributes("work", "work")
    assert stable_attributes(process) == process_attributes("work", "work", **{"dramatiq.message.outcome": "success"})
    assert send.attributes["messaging.message.id"] == process.attributes["messaging.message.id"] == message.message_id
    assert process.attributes["dramatiq.message.queue_wait_ms"] >= 0
    assert process.status.status_code is StatusCode.UNSET
    assert message.options["trace_context"]["traceparent"].split("-")[2] == format(send.context.span_id, "016x")


def test_unexpected_exception_marks_error_once_and_dead_letters(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """An unhandled error: ERROR status, error.type, one exception event, then a nack span to the XQ."""

    @dramatiq.actor(actor_name="boom", queue_name="work", max_retries=0)
    def boom() -> None:
        raise ValueError("bad value")

    boom.send()
    run(stub_broker, stub_worker, "work", fail_fast=False)
    wait_for(lambda: len(span_exporter.get_finished_spans()) == 3)

    spans = span_exporter.get_finished_spans()
    process, nack = one(spans, "process work"), one(spans, "nack work")
    assert process.status.status_code is StatusCode.ERROR
    # The exception's text may quote personal data: hidden unless capture is on (observability/personal_data.py).
    assert process.status.description == f"ValueError: {HIDDEN}"
    assert [event.name for event in process.events] == ["exception"]
    event = dict(process.events[0].attributes or {})
    assert event["exception.message"] == HIDDEN
    assert str(event["exception.stacktrace"]).endswith(f"ValueError: {HIDDEN}\n")
    assert stable_attributes(process) == process_attributes(
        "work",
        "boom",
        max_retries=0,
        **{
            "error.type": "ValueError",
            "dramatiq.message.outcome": "dead_lettered",
            "dramatiq.message.dead_lettered": True,
            "dramatiq.message.dead_letter_reason": "retries_exhausted",
            "dramatiq.message.dead_letter_queue": "work.XQ",
            "dramatiq.message.dead_letter_error": f"ValueError: {HIDDEN}",
        },
    )
    assert nack.kind is SpanKind.CLIENT and is_child(nack, process)
    assert stable_attributes(nack) == {
        "messaging.system": "dramatiq",
        "messaging.operation.type": "settle",
        "messaging.operation.name": "nack",
        "messaging.destination.name": "work",
        "dramatiq.message.dead_letter_queue": "work.XQ",
    }


def test_retry_chains_every_attempt_through_the_delay_queue(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """``Retry`` is not an error; the retry goes send DQ -> hop send -> next process, all in one trace."""
    attempts: list[int] = []

    @dramatiq.actor(actor_name="flaky", queue_name="work")
    def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise dramatiq.Retry(delay=10)

    flaky.send()
    run(stub_broker, stub_worker, "work")

    spans = span_exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == ["process work", "process work", "send work", "send work", "send work.DQ"]
    first_send, hop = named(spans, "send work")
    if first_send.attributes.get("dramatiq.message.delayed_hop"):
        first_send, hop = hop, first_send
    first, second = sorted(named(spans, "process work"), key=lambda s: s.attributes["dramatiq.message.retries"])
    retry_send = one(spans, "send work.DQ")
    assert is_child(first, first_send)
    assert is_child(retry_send, first) and is_child(hop, retry_send) and is_child(second, hop)
    assert first.status.status_code is StatusCode.UNSET and not first.events
    assert stable_attributes(first) == process_attributes(
        "work", "flaky", **{"dramatiq.message.outcome": "retrying", "dramatiq.retry.delay_ms": 10}
    )
    assert stable_attributes(second) == process_attributes(
        "work", "flaky", retries=1, **{"dramatiq.message.outcome": "success"}
    )
    assert stable_attributes(retry_send) == send_attributes("work.DQ", "flaky", **{"dramatiq.message.delay_ms": 10})
    assert stable_attributes(hop) == send_attributes("work", "flaky", **{"dramatiq.message.delayed_hop": True})


def test_throws_is_dead_lettered_without_error_status(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """An exception listed in ``throws`` is an expected outcome: no error status, no exception event."""

    @dramatiq.actor(actor_name="refuse", queue_name="work", throws=(BusinessError,))
    def refuse() -> None:
        raise BusinessError("out of stock")

    refuse.send()
    run(stub_broker, stub_worker, "work", fail_fast=False)

    process = one(span_exporter.get_finished_spans(), "process work")
    assert process.status.status_code is StatusCode.UNSET and not process.events
    assert process.attributes["dramatiq.message.outcome"] == "dead_lettered"
    assert process.attributes["dramatiq.message.dead_letter_reason"] == "throws"
    assert "error.type" not in process.attributes


def test_retries_exhausted_keeps_every_attempt_in_one_trace(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """Two attempts, both errors, the second dead-lettered; attempt numbers on each process span."""

    @dramatiq.actor(actor_name="always_fails", queue_name="work", max_retries=1, min_backoff=1, max_backoff=5)
    def always_fails() -> None:
        raise RuntimeError("down")

    always_fails.send()
    run(stub_broker, stub_worker, "work", fail_fast=False)

    processes = sorted(
        named(span_exporter.get_finished_spans(), "process work"),
        key=lambda s: s.attributes["dramatiq.message.retries"],
    )
    assert [p.attributes["dramatiq.message.retries"] for p in processes] == [0, 1]
    assert [p.attributes["dramatiq.message.outcome"] for p in processes] == ["retrying", "dead_lettered"]
    assert all(p.status.status_code is StatusCode.ERROR for p in processes)
    assert processes[0].attributes["dramatiq.retry.delay_ms"] >= 1
    assert len({trace_id(p) for p in processes}) == 1


def test_delayed_message_hop_continues_from_the_message_context(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """A delayed send: send DQ (under the request) -> hop send (from the consumer thread) -> process."""

    @dramatiq.actor(actor_name="later", queue_name="work")
    def later() -> None:
        pass

    with tracer.start_as_current_span("request"):
        later.send_with_options(delay=300)
    run(stub_broker, stub_worker, "work")

    spans = span_exporter.get_finished_spans()
    request, dq_send, hop, process = (one(spans, n) for n in ("request", "send work.DQ", "send work", "process work"))
    assert is_child(dq_send, request) and is_child(hop, dq_send) and is_child(process, hop)
    assert hop.attributes["dramatiq.message.delayed_hop"] is True
    # The wait is measured from the eta, not from the first send 300 ms earlier.
    assert process.attributes["dramatiq.message.queue_wait_ms"] < 300


def test_pipeline_steps_nest_under_the_previous_step(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """Pipelines enqueue the next step while the previous process span is still current."""

    @dramatiq.actor(actor_name="first", queue_name="work")
    def first() -> int:
        return 1

    @dramatiq.actor(actor_name="second", queue_name="work")
    def second(value: int) -> None:
        pass

    with tracer.start_as_current_span("request"):
        dramatiq.pipeline([first.message(), second.message()]).run()
    run(stub_broker, stub_worker, "work")

    spans = span_exporter.get_finished_spans()
    request = one(spans, "request")
    sends = {s.attributes["dramatiq.actor.name"]: s for s in named(spans, "send work")}
    processes = {s.attributes["dramatiq.actor.name"]: s for s in named(spans, "process work")}
    assert is_child(sends["first"], request)
    assert is_child(processes["first"], sends["first"])
    assert is_child(sends["second"], processes["first"])
    assert is_child(processes["second"], sends["second"])


def test_group_completion_callback_nests_under_the_last_member(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """Group members nest under the caller; the completion callback under the member that finished last."""

    @dramatiq.actor(actor_name="member", queue_name="work")
    def member(x: int) -> None:
        pass

    @dramatiq.actor(actor_name="all_done", queue_name="work")
    def all_done() -> None:
        pass

    with tracer.start_as_current_span("request"):
        group = dramatiq.group([member.message(1), member.message(2)])
        group.add_completion_callback(all_done.message())
        group.run()
    run(stub_broker, stub_worker, "work")

    spans = span_exporter.get_finished_spans()
    request = one(spans, "request")
    sends = named(spans, "send work")
    member_sends = [s for s in sends if s.attributes["dramatiq.actor.name"] == "member"]
    done_send = next(s for s in sends if s.attributes["dramatiq.actor.name"] == "all_done")
    member_processes = [s for s in named(spans, "process work") if s.attributes["dramatiq.actor.name"] == "member"]
    done_process = next(s for s in named(spans, "process work") if s.attributes["dramatiq.actor.name"] == "all_done")
    assert len(member_sends) == 2 and all(is_child(s, request) for s in member_sends)
    assert any(is_child(done_send, p) for p in member_processes)
    assert is_child(done_process, done_send)
    assert len({trace_id(s) for s in spans}) == 1


def test_on_success_on_failure_and_retry_exhausted_callbacks_nest_under_the_process_span(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """Callbacks are sent from the process span of the message that triggered them."""

    @dramatiq.actor(actor_name="ok", queue_name="work")
    def ok() -> None:
        pass

    @dramatiq.actor(actor_name="fails", queue_name="work", max_retries=0)
    def fails() -> None:
        raise RuntimeError("no")

    @dramatiq.actor(actor_name="on_ok", queue_name="work")
    def on_ok(message: dict, result: Any) -> None:
        pass

    @dramatiq.actor(actor_name="on_bad", queue_name="work")
    def on_bad(message: dict, exception: dict) -> None:
        pass

    @dramatiq.actor(actor_name="exhausted", queue_name="work")
    def exhausted(message: dict, retry_info: dict) -> None:
        pass

    ok.send_with_options(on_success=on_ok)
    fails.send_with_options(on_failure=on_bad, on_retry_exhausted="exhausted")
    run(stub_broker, stub_worker, "work", fail_fast=False)

    spans = span_exporter.get_finished_spans()
    by_actor = {(s.name, s.attributes["dramatiq.actor.name"]): s for s in spans if s.name.startswith(("send", "proc"))}
    assert is_child(by_actor["send work", "on_ok"], by_actor["process work", "ok"])
    assert is_child(by_actor["send work", "on_bad"], by_actor["process work", "fails"])
    assert is_child(by_actor["send work", "exhausted"], by_actor["process work", "fails"])
    for callback in ("on_ok", "on_bad", "exhausted"):
        assert is_child(by_actor["process work", callback], by_actor["send work", callback])


def test_age_limit_skip_is_marked_and_dead_lettered(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """A message past its max_age is skipped by AgeLimit: the span says so and the message goes to the XQ."""

    @dramatiq.actor(actor_name="stale", queue_name="work")
    def stale() -> None:
        raise AssertionError("must not run")

    message = stale.message_with_options(max_age=1000)
    stub_broker.enqueue(message.copy(message_timestamp=message.message_timestamp - 60_000))
    run(stub_broker, stub_worker, "work", fail_fast=False)

    process = one(span_exporter.get_finished_spans(), "process work")
    assert process.attributes["dramatiq.message.skipped"] is True
    assert process.attributes["dramatiq.message.skip_reason"] == "Message age limit exceeded"
    assert process.attributes["dramatiq.message.outcome"] == "dead_lettered"
    assert process.attributes["dramatiq.message.dead_letter_reason"] == "skipped"


def test_skip_without_failure_is_only_skipped(span_exporter: InMemorySpanExporter) -> None:
    """A middleware skip that does not fail the message (periodiq's stale tick) is marked skipped, not dead."""

    class SkipAll(dramatiq.Middleware):
        def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
            raise SkipMessage("stale tick")

    broker = make_stub_broker()
    broker.add_middleware(SkipAll())

    @dramatiq.actor(actor_name="tick", queue_name="work", broker=broker)
    def tick() -> None:
        raise AssertionError("must not run")

    tick.send()
    drain(broker)
    process = one(span_exporter.get_finished_spans(), "process work")
    assert process.attributes["dramatiq.message.outcome"] == "skipped"
    assert process.attributes["dramatiq.message.skip_reason"] == "skipped by middleware"
    assert "dramatiq.message.dead_lettered" not in process.attributes


def test_publish_failure_ends_the_send_span_once_with_the_error(
    stub_broker: StubBroker, span_exporter: InMemorySpanExporter
) -> None:
    """A publish that raises still ends its send span, exactly once, with the error recorded."""
    message = dramatiq.Message(queue_name="missing", actor_name="ghost", args=(), kwargs={}, options={})
    with pytest.raises(dramatiq.errors.QueueNotFound):
        stub_broker.enqueue(message)

    send = one(span_exporter.get_finished_spans(), "send missing")
    assert send.status.status_code is StatusCode.ERROR
    assert send.attributes["error.type"] == "dramatiq.errors.QueueNotFound"
    assert [event.name for event in send.events] == ["exception"]


def test_publish_retried_after_reconnect_is_one_span_with_attempts(span_exporter: InMemorySpanExporter) -> None:
    """RabbitMQ fires before_enqueue once per publish attempt; we still make one span and count attempts."""

    class ReconnectingBroker(StubBroker):
        def enqueue(self, message: dramatiq.Message, *, delay: int | None = None) -> dramatiq.Message:
            self.emit_before("enqueue", message, delay)  # the attempt that hit a closed connection
            return super().enqueue(message, delay=delay)

    broker = make_stub_broker(broker_class=ReconnectingBroker)

    @dramatiq.actor(actor_name="twice", queue_name="work", broker=broker)
    def twice() -> None:
        pass

    twice.send()
    send = one(span_exporter.get_finished_spans(), "send work")
    assert send.attributes["dramatiq.publish.attempts"] == 2


def test_async_actor_spans_nest_under_the_process_span(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """``async def`` actors run on the event-loop thread and still see the process span as current."""

    @dramatiq.actor(actor_name="async_work", queue_name="work")
    async def async_work() -> None:
        with tracer.start_as_current_span("async inner"):
            pass

    async_work.send()
    run(stub_broker, stub_worker, "work")

    spans = span_exporter.get_finished_spans()
    assert is_child(one(spans, "async inner"), one(spans, "process work"))


def test_a_failed_retry_enqueue_is_marked_lost_instead_of_vanishing(span_exporter: InMemorySpanExporter) -> None:
    """Dramatiq acks a message whose retry publish fails (emit_after swallows it); we mark the loss."""

    class NoDelayQueueBroker(StubBroker):
        def enqueue(self, message: dramatiq.Message, *, delay: int | None = None) -> dramatiq.Message:
            if delay is not None:
                raise dramatiq.errors.ConnectionClosed(RuntimeError("connection lost"))
            return super().enqueue(message, delay=delay)

    broker = make_stub_broker(broker_class=NoDelayQueueBroker)

    @dramatiq.actor(actor_name="unlucky", queue_name="work", broker=broker)
    def unlucky() -> None:
        raise RuntimeError("first failure")

    unlucky.send()
    drain(broker, fail_fast=False)

    spans = span_exporter.get_finished_spans()
    process, failed_send = one(spans, "process work"), one(spans, "send work.DQ")
    assert is_child(failed_send, process)
    assert failed_send.status.status_code is StatusCode.ERROR
    assert failed_send.attributes["error.type"] == "dramatiq.errors.ConnectionClosed"
    assert process.attributes["dramatiq.message.outcome"] == "lost"
    assert process.status.description == "retry enqueue failed: message lost"
