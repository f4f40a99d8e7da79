"""Context safety: baggage, hostile carriers, no leaks between messages, many threads, policies, failures."""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from observability import Tracing
from tests.conftest import drain, make_stub_broker
from tests.spans import is_child, named, one, parent_of, span_id, trace_id
from tests.unit.observability.test_span_trees import run, wait_for

tracer = trace.get_tracer("tests")


def test_baggage_is_restored_for_actor_code_and_gone_afterwards(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """Baggage set by the producer is visible in the actor, and not on the worker thread after it."""
    seen: list[Any] = []

    @dramatiq.actor(actor_name="tenant_aware", queue_name="work")
    def tenant_aware() -> None:
        seen.append(baggage.get_baggage("tenant"))

    @dramatiq.actor(actor_name="plain", queue_name="work")
    def plain() -> None:
        seen.append(baggage.get_baggage("tenant"))

    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with tracer.start_as_current_span("request"):
            message = tenant_aware.send()
    finally:
        context.detach(token)
    assert "tenant=acme" in message.options["trace_context"]["baggage"]
    run(stub_broker, stub_worker, "work")
    plain.send()
    run(stub_broker, stub_worker, "work")
    assert seen == ["acme", None]


def test_baggage_from_the_wire_reaches_actor_code_and_the_messages_it_sends(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """docs/wire-format.md: a producer's ``baggage`` field is read with the baggage API and passed on."""
    seen: list[tuple[str, Any]] = []
    sent: list[dramatiq.Message[Any]] = []

    @dramatiq.actor(actor_name="downstream", queue_name="work")
    def downstream() -> None:
        seen.append(("downstream", baggage.get_baggage("tenant")))

    @dramatiq.actor(actor_name="upstream", queue_name="work")
    def upstream() -> None:
        seen.append(("upstream", baggage.get_baggage("tenant")))
        sent.append(downstream.send())

    message = upstream.message()
    message.options["trace_context"] = {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "baggage": "tenant=acme",
    }
    StubBroker.enqueue(stub_broker, message)  # as a foreign producer published it: no send span of ours
    run(stub_broker, stub_worker, "work")

    assert seen == [("upstream", "acme"), ("downstream", "acme")]
    assert sent[0].options["trace_context"]["baggage"] == "tenant=acme"
    processes = named(span_exporter.get_finished_spans(), "process work")
    assert {format(trace_id(span), "032x") for span in processes} == {"4bf92f3577b34da6a3ce929d0e0e4736"}


@pytest.mark.parametrize(
    ("carrier", "flagged"),
    [
        ("not a dict", True),
        ({"traceparent": 42}, True),
        ({"traceparent": "00-" + "f" * 10_000}, True),
        ({"traceparent": "00-zzzz-yyyy-01"}, False),
        ({"traceparent": "00-00000000000000000000000000000000-0000000000000000-01"}, False),
        ({"baggage": "k=" + "v" * 100_000}, True),
        ({str(i): "x" for i in range(100)}, True),
        ({}, False),
    ],
)
def test_hostile_carrier_starts_a_fresh_trace_and_the_message_still_runs(
    stub_broker: StubBroker,
    stub_worker: dramatiq.Worker,
    span_exporter: InMemorySpanExporter,
    carrier: Any,
    flagged: bool,
) -> None:
    """Malformed, wrongly typed or oversized carriers are ignored: new root span, message processed."""
    ran: list[bool] = []

    @dramatiq.actor(actor_name="robust", queue_name="work")
    def robust() -> None:
        ran.append(True)

    message = robust.message()
    message.options["trace_context"] = carrier
    StubBroker.enqueue(stub_broker, message)  # the unwrapped publish: no send span re-injects a good carrier
    run(stub_broker, stub_worker, "work")

    process = one(span_exporter.get_finished_spans(), "process work")
    assert ran == [True]
    assert parent_of(process) is None
    assert process.attributes.get("dramatiq.trace_context.invalid", False) is flagged
    assert process.attributes["dramatiq.message.outcome"] == "success"


def test_no_context_leaks_into_the_next_message_on_the_same_thread(span_exporter: InMemorySpanExporter) -> None:
    """After a traced message, an untraced one on the same thread starts its own trace."""
    broker = make_stub_broker()
    ambient: list[trace.Span] = []
    after_ack: list[trace.Span] = []

    class Probe(dramatiq.Middleware):
        """Looks at the worker thread's context once a message is fully done with."""

        def after_ack(self, broker: dramatiq.Broker, message: Any) -> None:
            after_ack.append(trace.get_current_span())

    broker.add_middleware(Probe())

    @dramatiq.actor(actor_name="first", queue_name="work", broker=broker)
    def first() -> None:
        pass

    @dramatiq.actor(actor_name="second", queue_name="work", broker=broker)
    def second() -> None:
        ambient.append(trace.get_current_span())

    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        with tracer.start_as_current_span("request"):
            first.send()
        broker.join("work")
        StubBroker.enqueue(broker, second.message())  # no carrier at all
        broker.join("work")
        worker.join()
    finally:
        worker.stop()

    spans = span_exporter.get_finished_spans()
    process_first = next(s for s in named(spans, "process work") if s.attributes["dramatiq.actor.name"] == "first")
    process_second = next(s for s in named(spans, "process work") if s.attributes["dramatiq.actor.name"] == "second")
    assert parent_of(process_second) is None
    assert trace_id(process_second) != trace_id(process_first)
    assert ambient[0].get_span_context().span_id == span_id(process_second)
    assert after_ack == [trace.INVALID_SPAN, trace.INVALID_SPAN]


def test_sixteen_threads_keep_each_message_in_its_own_trace(span_exporter: InMemorySpanExporter) -> None:
    """200 messages on 16 worker threads: every process span under its own send, every inner under its process."""
    broker = make_stub_broker()

    @dramatiq.actor(actor_name="parallel", queue_name="work", broker=broker)
    def parallel(i: int) -> None:
        with tracer.start_as_current_span("inner", attributes={"i": i}):
            pass

    for i in range(200):
        with tracer.start_as_current_span("request", attributes={"i": i}):
            parallel.send(i)
    drain(broker, threads=16)

    spans = span_exporter.get_finished_spans()
    sends = {s.attributes["messaging.message.id"]: s for s in named(spans, "send work")}
    processes = {s.attributes["messaging.message.id"]: s for s in named(spans, "process work")}
    inners = {parent_of(s): s for s in named(spans, "inner")}
    requests = {s.attributes["i"]: s for s in named(spans, "request")}
    assert len(sends) == len(processes) == len(inners) == 200
    for message_id, process in processes.items():
        assert is_child(process, sends[message_id])
        inner = inners[span_id(process)]
        assert is_child(sends[message_id], requests[inner.attributes["i"]])
    assert len({trace_id(s) for s in processes.values()}) == 200


def test_link_policy_starts_a_new_trace_linked_to_the_send(span_exporter: InMemorySpanExporter) -> None:
    """With ``parent_policy="link"`` the process span is a root that links to the delivering send span."""
    broker = make_stub_broker(Tracing(parent_policy="link"))

    @dramatiq.actor(actor_name="linked", queue_name="work", broker=broker)
    def linked() -> None:
        pass

    linked.send()
    drain(broker)
    spans = span_exporter.get_finished_spans()
    send, process = one(spans, "send work"), one(spans, "process work")
    assert parent_of(process) is None
    assert [link.context.span_id for link in process.links] == [span_id(send)]
    assert trace_id(process) != trace_id(send)


def test_unknown_actor_is_dead_lettered_with_a_marked_span(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """A message for an actor no worker knows never reaches the process hooks; we still mark it."""

    @dramatiq.actor(actor_name="known", queue_name="work")
    def known() -> None:
        pass

    ghost = dramatiq.Message(queue_name="work", actor_name="ghost", args=(), kwargs={}, options={})
    with tracer.start_as_current_span("request"):
        stub_broker.enqueue(ghost)
    stub_broker.join("work", fail_fast=False)
    wait_for(lambda: len(named(span_exporter.get_finished_spans(), "nack work")) == 1)

    spans = span_exporter.get_finished_spans()
    send, process, nack = one(spans, "send work"), one(spans, "process work"), one(spans, "nack work")
    assert is_child(process, send) and is_child(nack, process)
    assert process.status.status_code is StatusCode.ERROR
    assert process.attributes["error.type"] == "dramatiq.errors.ActorNotFound"
    assert process.attributes["dramatiq.message.dead_letter_reason"] == "actor_not_found"
    assert stub_broker.dead_letters[0].message_id == ghost.message_id


def test_arguments_stay_out_of_spans_unless_asked_for(span_exporter: InMemorySpanExporter) -> None:
    """No actor arguments on spans by default; ``capture_args=True`` records them, truncated."""
    for capture, expected in ((False, None), (True, "('secret',)")):
        span_exporter.clear()
        broker = make_stub_broker(Tracing(capture_args=capture))

        @dramatiq.actor(actor_name="private", queue_name="work", broker=broker)
        def private(value: str) -> None:
            pass

        private.send("secret")
        drain(broker)
        process = one(span_exporter.get_finished_spans(), "process work")
        assert process.attributes.get("dramatiq.message.args") == expected
        assert all("secret" not in str(v) for k, v in process.attributes.items() if k != "dramatiq.message.args")


class _ExplodingTracerProvider(trace.TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        raise RuntimeError("tracer provider is broken")


def test_a_broken_tracer_never_stops_messages(span_exporter: InMemorySpanExporter) -> None:
    """Hooks swallow their own failures: with a provider that raises, sends and processing still work."""
    broker = make_stub_broker(Tracing(tracer_provider=_ExplodingTracerProvider()))
    done = threading.Event()

    @dramatiq.actor(actor_name="survivor", queue_name="work", broker=broker)
    def survivor() -> None:
        done.set()

    survivor.send()
    drain(broker)
    assert done.is_set()
    assert broker.dead_letters == []
