"""The order and user flows on the actors' StubBroker: outcomes, spans, bad payloads, SMTP trouble."""

from __future__ import annotations

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import actors
from actors import bootstrap
from actors.payloads import PlaceOrder
from services.breaker import CircuitBreaker
from services.errors import InvalidPayload
from services.model import Order, Product, User
from tests.fakes import FakeMailer, unavailable
from tests.spans import is_child, named, one
from tests.unit.actors.conftest import settle
from tests.unit.observability.test_span_trees import wait_for


def raw_message(actor_name: str, payload: object) -> dramatiq.Message:
    """A message built without our send-side validation, as a foreign producer would publish it."""
    queue = actors.broker.get_actor(actor_name).queue_name
    return dramatiq.Message(queue_name=queue, actor_name=actor_name, args=(payload,), kwargs={}, options={})


ORDER = {"order_id": "o1", "customer_email": "ada@example.com", "lines": [{"sku": "APPLE", "quantity": 3}]}


def test_an_order_flows_through_three_queues_in_one_trace(
    deps: bootstrap.Dependencies, broker: StubBroker, worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """place_order -> reserve_inventory -> notify_customer: stock deducted, email sent, one trace."""
    actors.place_order.send(ORDER)
    settle(broker, worker)

    with deps.session_factory() as session:
        assert session.get(Order, "o1").status == "reserved"
        assert session.get(Product, "APPLE").stock == 7
    assert isinstance(deps.mailer, FakeMailer)
    assert [m.subject for m in deps.mailer.sent] == ["Order o1: reserved"]
    spans = span_exporter.get_finished_spans()
    process = {s.name: s for s in spans if s.name.startswith("process ")}
    send = {s.name: s for s in spans if s.name.startswith("send ")}
    assert is_child(process["process orders"], send["send orders"])
    assert is_child(send["send inventory"], process["process orders"])
    assert is_child(process["process inventory"], send["send inventory"])
    assert is_child(send["send email"], process["process inventory"])
    assert is_child(process["process email"], send["send email"])
    assert is_child(one(spans, "reserve inventory"), process["process inventory"])
    assert one(spans, "reserve inventory").attributes["order.status"] == "reserved"
    flow = [*process.values(), *send.values(), *named(spans, "reserve inventory"), *named(spans, "place order")]
    assert len({s.context.trace_id for s in flow}) == 1, [  # (late spans of earlier tests may share the exporter)
        (s.name, format(s.context.trace_id, "x")[:8], s.attributes.get("dramatiq.actor.name")) for s in spans
    ]


def test_a_redelivered_order_is_a_visible_duplicate_with_one_effect(
    deps: bootstrap.Dependencies, broker: StubBroker, worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """The same order sent twice deducts once; the second process span says duplicate, not error."""
    actors.place_order.send(ORDER)
    settle(broker, worker)
    actors.place_order.send(ORDER)
    settle(broker, worker)

    with deps.session_factory() as session:
        assert session.get(Product, "APPLE").stock == 7
    assert len(deps.mailer.sent) == 1
    orders_spans = named(span_exporter.get_finished_spans(), "process orders")
    assert [s.attributes.get("dramatiq.message.duplicate", False) for s in orders_spans] == [False, True]
    assert all(s.status.status_code is StatusCode.UNSET for s in orders_spans)


def test_invalid_payload_is_dead_lettered_at_once_with_the_field(
    deps: bootstrap.Dependencies, broker: StubBroker, worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """A payload that fails validation is not retried: one attempt, XQ, the field and problem on the span."""
    broker.enqueue(raw_message("place_order", {"order_id": "o2", "customer_email": "nope", "lines": []}))
    settle(broker, worker)

    [process] = named(span_exporter.get_finished_spans(), "process orders")
    assert process.attributes["dramatiq.message.dead_letter_reason"] == "throws"
    error = process.attributes["dramatiq.message.dead_letter_error"]
    assert error.startswith("InvalidPayload: PlaceOrder: ")
    assert "customer_email: String should match pattern" in error
    assert "lines: List should have at least 1 item" in error
    assert [m.message_id for m in broker.dead_letters] == [process.attributes["messaging.message.id"]]


def test_a_future_schema_version_is_refused_the_same_way(
    deps: bootstrap.Dependencies, broker: StubBroker, worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """A worker never guesses at a payload version it does not know."""
    broker.enqueue(raw_message("place_order", {**ORDER, "schema_version": 99}))
    settle(broker, worker)
    [process] = named(span_exporter.get_finished_spans(), "process orders")
    assert (
        "schema_version: 99 is newer than this worker understands (max 1)"
        in (process.attributes["dramatiq.message.dead_letter_error"])
    )


def test_user_registration_sends_one_welcome_email(
    deps: bootstrap.Dependencies, broker: StubBroker, worker: dramatiq.Worker
) -> None:
    """register_user -> send_welcome_email."""
    actors.register_user.send({"user_id": "u1", "email": "grace@example.com", "name": "Grace"})
    settle(broker, worker)
    with deps.session_factory() as session:
        assert session.get(User, "u1").name == "Grace"
    assert [(m.to, m.subject) for m in deps.mailer.sent] == [("grace@example.com", "Welcome!")]


def test_an_open_smtp_circuit_defers_email_without_burning_retries_while_orders_flow(
    deps: bootstrap.Dependencies, broker: StubBroker, worker: dramatiq.Worker, span_exporter: InMemorySpanExporter
) -> None:
    """SMTP keeps failing: the breaker opens, email is re-sent later (retries untouched), orders continue."""
    breaker = CircuitBreaker("smtp-test", failure_threshold=1, reset_timeout=1.5)
    failing = FakeMailer(fail_with=unavailable())

    class BreakerMailer:
        def send(self, *, to: str, subject: str, body: str) -> None:
            breaker.call(lambda: failing.send(to=to, subject=subject, body=body))

    deps.mailer = BreakerMailer()
    actors.place_order.send(ORDER)
    actors.place_order.send({**ORDER, "order_id": "o3", "lines": [{"sku": "PEAR", "quantity": 1}]})
    for queue in ("orders", "inventory"):  # not worker.join(): email keeps being deferred while SMTP is down
        broker.join(queue, fail_fast=False)
    with deps.session_factory() as session:
        assert session.get(Order, "o3").status == "reserved"  # orders kept flowing
    wait_for(  # SMTP stays down until the open circuit has deferred an email instead of failing it
        lambda: any(
            s.attributes.get("dramatiq.message.deferred") == "smtp_circuit_open"
            for s in named(span_exporter.get_finished_spans(), "process email")
        ),
        timeout=30,
    )
    failing.fail_with = None  # SMTP recovers; the deferred emails go out after the breaker's timeout
    settle(broker, worker)

    assert sorted(m.subject for m in failing.sent) == ["Order o1: reserved", "Order o3: reserved"]
    email_spans = named(span_exporter.get_finished_spans(), "process email")
    deferred = [s for s in email_spans if s.attributes.get("dramatiq.message.deferred") == "smtp_circuit_open"]
    assert deferred, "at least one email must have been deferred by the open circuit"
    # A deferral ends its delivery successfully and re-sends with a fresh retry budget.
    assert all(s.attributes["dramatiq.message.outcome"] == "success" for s in deferred)
    assert all(s.attributes["dramatiq.message.deferred_ms"] > 0 for s in deferred)
    assert broker.dead_letters == []


def test_send_refuses_an_invalid_payload_before_publishing(broker: StubBroker) -> None:
    """``.send()`` validates: the producer gets the field and problem, nothing reaches the queue."""
    with pytest.raises(InvalidPayload, match=r"PlaceOrder: lines\.0\.quantity: Input should be greater than 0"):
        actors.place_order.send({**ORDER, "lines": [{"sku": "APPLE", "quantity": 0}]})
    with pytest.raises(TypeError, match="exactly one payload"):
        actors.place_order.send(ORDER, ORDER)
    assert broker.queues["orders"].qsize() == 0
    message = actors.place_order.send(PlaceOrder.parse(ORDER))  # a model instance travels as its wire dict
    assert message.args == (PlaceOrder.parse(ORDER).wire(),)
