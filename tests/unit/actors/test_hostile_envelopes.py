"""What a foreign producer may put on the wire that the actors must refuse at once (issue 7, fault 6).

The whole-system check, 10,000 such messages through a real worker on RabbitMQ, is
``tests/faults/test_hostile_input.py``; these are the rules, one behaviour each.
"""

from __future__ import annotations

from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from actors import bootstrap
from actors.payloads import OrderRef, PlaceOrder
from messaging.envelope import envelope_problem
from services.errors import InvalidPayload
from tests.spans import named
from tests.unit.actors.conftest import settle

ORDER = {"order_id": "o1", "customer_email": "ada@example.com", "lines": [{"sku": "APPLE", "quantity": 1}]}


def _message(**fields: Any) -> dramatiq.Message[Any]:
    defaults: dict[str, Any] = {
        "queue_name": "orders",
        "actor_name": "place_order",
        "args": (ORDER,),
        "kwargs": {},
        "options": {},
    }
    return dramatiq.Message(**(defaults | fields))


def test_a_well_formed_envelope_passes() -> None:
    """Dramatiq's own messages, on their queue or its delay queue, are never refused."""
    assert envelope_problem(_message(), "orders") is None
    assert envelope_problem(_message(queue_name="orders.DQ", options={"eta": 1}), "orders.DQ") is None
    assert envelope_problem(_message(message_timestamp=1.5e12), "orders") is None


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"options": "eta"}, "options is str, not an object"),
        ({"options": None}, "options is NoneType, not an object"),
        ({"options": [1]}, "options is list, not an object"),
        ({"actor_name": ["place_order"]}, "actor_name is list, not a string"),
        ({"queue_name": "inventory"}, "queue_name 'inventory' is not the queue it arrived on ('orders')"),
        ({"queue_name": None}, "queue_name None is not the queue it arrived on ('orders')"),
        ({"message_id": 5}, "message_id is int, not a string"),
        ({"message_timestamp": "yesterday"}, "message_timestamp is str, not a number"),
        ({"message_timestamp": True}, "message_timestamp is bool, not a number"),
        ({"kwargs": [1]}, "kwargs is list, not an object"),
        ({"options": {"throws": "builtins.Exception"}}, "options.throws cannot come from the wire"),
        ({"options": {"retry_when": "x"}}, "options.retry_when cannot come from the wire"),
    ],
)
def test_an_envelope_that_would_break_the_worker_loop_is_refused(fields: dict[str, Any], problem: str) -> None:
    """Each wrong type that fails outside Dramatiq's middleware is named."""
    assert envelope_problem(_message(**fields), "orders") == problem


def test_a_long_foreign_queue_name_is_shown_truncated() -> None:
    """The reason stays one short line whatever the producer sent."""
    problem = envelope_problem(_message(queue_name="q" * 10_000), "orders")
    assert problem is not None and len(problem) < 150


@pytest.mark.parametrize(
    ("args", "kwargs"), [((), {}), ((ORDER, ORDER), {}), ((ORDER,), {"extra": 1}), (("a", "b"), {})]
)
def test_the_wrong_number_of_arguments_is_dead_lettered_at_once(
    deps: bootstrap.Dependencies,
    broker: StubBroker,
    worker: dramatiq.Worker,
    span_exporter: InMemorySpanExporter,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    """Not a TypeError retried for a quarter of an hour: InvalidPayload, in every actor's throws."""
    broker.enqueue(
        dramatiq.Message(queue_name="orders", actor_name="place_order", args=args, kwargs=kwargs, options={})
    )
    settle(broker, worker)

    [process] = named(span_exporter.get_finished_spans(), "process orders")
    assert process.attributes["dramatiq.message.dead_letter_reason"] == "throws"
    assert process.attributes["dramatiq.message.retries"] == 0
    assert process.attributes["dramatiq.message.dead_letter_error"] == (
        f"InvalidPayload: place_order takes exactly one payload argument, got {len(args)} positional "
        f"and {len(kwargs)} keyword"
    )
    assert len(broker.dead_letters) == 1


@pytest.mark.parametrize(
    ("model", "payload", "field"),
    [
        (PlaceOrder, {**ORDER, "order_id": "o\x001"}, "order_id"),
        (PlaceOrder, {**ORDER, "lines": [{"sku": "APPLE\x00", "quantity": 1}]}, "lines.0.sku"),
        (PlaceOrder, {**ORDER, "customer_email": "ada\x00@example.com"}, "customer_email"),
        (OrderRef, {"order_id": "\x00"}, "order_id"),
    ],
)
def test_a_nul_character_is_an_invalid_payload(model: type[PlaceOrder | OrderRef], payload: Any, field: str) -> None:
    """PostgreSQL text cannot hold U+0000: refused as invalid rather than retried as a database error."""
    with pytest.raises(InvalidPayload, match=f"{field}: String should match pattern"):
        model.parse(payload)
