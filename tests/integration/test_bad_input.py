"""Bad messages from a foreign producer go to ``orders.XQ`` at once, with the reason on the span; the worker lives on.

Published with raw pika, as a producer in another language would: an invalid payload, a payload from a
newer schema, a message for an actor nobody declared, and a body that is not JSON, then one valid order.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pika
import pytest
from opentelemetry.trace import StatusCode
from sqlalchemy import Engine

from observability.personal_data import HIDDEN
from otlp_receiver import OtlpReceiver, ReceivedSpan
from services.model import Order, Product
from tests.environment.database import session
from tests.environment.processes import ServiceProcess
from tests.environment.sender import FlowSender
from tests.environment.stack import Stack

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(150)]

WAIT = 60.0
DEAD = "dramatiq.message.dead_lettered"


def _dramatiq_body(actor_name: str, payload: Any) -> tuple[str, bytes]:
    """Dramatiq's JSON message, as ``docs/wire-format.md`` describes it."""
    message_id = str(uuid.uuid4())
    body = {
        "queue_name": "orders",
        "actor_name": actor_name,
        "args": [payload],
        "kwargs": {},
        "options": {},
        "message_id": message_id,
        "message_timestamp": int(time.time() * 1000),
    }
    return message_id, json.dumps(body).encode()


def _publish(flow_env: Stack, bodies: list[bytes]) -> None:
    connection = flow_env.connect()
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for body in bodies:
            channel.basic_publish(
                exchange="",
                routing_key="orders",
                body=body,
                properties=pika.BasicProperties(delivery_mode=2, content_type="application/json"),
                mandatory=True,
            )
    finally:
        connection.close()


def _process_span(spans: list[ReceivedSpan], message_id: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == "process orders" and s.attributes.get("messaging.message.id") == message_id]
    assert len(found) == 1, f"{len(found)} process spans for {message_id}"
    return found[0]


def test_bad_messages_are_dead_lettered_with_a_reason_and_the_worker_lives_on(
    flow_env: Stack,
    flow_sender: FlowSender,
    flow_database: Engine,
    start_flow_worker: Callable[..., ServiceProcess],
    otlp_receiver: OtlpReceiver,
) -> None:
    with session(flow_database) as db:
        db.add(Product(sku="SKU-APPLE", name="Apple", stock=10))
        db.commit()
    flow_sender.declare("orders")  # the queue, its .DQ and its .XQ, with the arguments the worker uses

    invalid_id, invalid = _dramatiq_body(
        "place_order", {"order_id": "bad-1", "lines": [{"sku": "SKU-APPLE", "quantity": "lots"}]}
    )
    future_id, future = _dramatiq_body(
        "place_order",
        {
            "schema_version": 99,
            "order_id": "bad-2",
            "customer_email": "ada@example.com",
            "lines": [{"sku": "SKU-APPLE", "quantity": 1}],
        },
    )
    unknown_id, unknown = _dramatiq_body("no_such_actor", {"order_id": "bad-3"})
    not_json = b"\x00this is not json{"
    valid_id, valid = _dramatiq_body(
        "place_order",
        {"order_id": "good-1", "customer_email": "ada@example.com", "lines": [{"sku": "SKU-APPLE", "quantity": 1}]},
    )
    _publish(flow_env, [invalid, future, unknown, not_json, valid])

    worker = start_flow_worker()

    def valid_one_done() -> bool:
        with session(flow_database) as db:
            order = db.get(Order, "good-1")
            return order is not None and order.status != "pending"

    assert otlp_receiver.wait_for(lambda spans: sum(1 for s in spans if s.name == "process orders") >= 4, WAIT), (
        worker.describe()
    )
    deadline = time.monotonic() + WAIT
    while not (valid_one_done() and flow_env.ready_count("orders.XQ") >= 4) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert valid_one_done(), worker.describe()
    assert worker.running, worker.describe()  # nothing above took the worker down

    # Let it finish the valid order's flow and flush its spans.
    assert worker.terminate() == 0, worker.describe()
    assert otlp_receiver.errors == []
    spans = otlp_receiver.spans

    with session(flow_database) as db:
        order = db.get(Order, "good-1")
        assert order is not None and order.status == "reserved"
        assert db.get(Order, "bad-1") is None
        assert db.get(Order, "bad-2") is None

    dead = flow_env.take_all("orders.XQ")
    assert len(dead) == 4, dead
    assert not_json in dead
    dead_ids = {json.loads(body)["message_id"] for body in dead if body != not_json}
    assert dead_ids == {invalid_id, future_id, unknown_id}

    invalid_span = _process_span(spans, invalid_id)
    assert invalid_span.attributes[DEAD] is True
    assert invalid_span.attributes["dramatiq.message.dead_letter_reason"] == "throws"
    error = invalid_span.attributes["dramatiq.message.dead_letter_error"]
    assert error.startswith("InvalidPayload: PlaceOrder:"), error
    assert "customer_email" in error, error
    assert "lines.0.quantity" in error, error
    assert invalid_span.status_code is not StatusCode.ERROR  # InvalidPayload is in the actor's throws

    future_span = _process_span(spans, future_id)
    assert future_span.attributes[DEAD] is True
    assert future_span.attributes["dramatiq.message.dead_letter_reason"] == "throws"
    assert "schema_version" in future_span.attributes["dramatiq.message.dead_letter_error"]
    assert "99" in future_span.attributes["dramatiq.message.dead_letter_error"]

    unknown_span = _process_span(spans, unknown_id)
    assert unknown_span.attributes[DEAD] is True
    assert unknown_span.attributes["dramatiq.message.dead_letter_reason"] == "actor_not_found"
    # The actor name is on the span; the exception's text is hidden like any text not declared safe_to_log.
    assert unknown_span.attributes["dramatiq.message.dead_letter_error"] == "ActorNotFound: " + HIDDEN

    for span in (invalid_span, future_span, unknown_span):
        assert span.attributes["dramatiq.message.dead_letter_queue"] == "orders.XQ"
        nacks = [s for s in spans if s.name == "nack orders" and s.parent_span_id == span.span_id]
        assert len(nacks) == 1, f"no nack span under {span.attributes['messaging.message.id']}"

    # The non-JSON body never reaches the middleware: Dramatiq nacks it before any hook, so no span.
    valid_span = _process_span(spans, valid_id)
    assert valid_span.attributes["dramatiq.message.outcome"] == "success"
    assert DEAD not in valid_span.attributes
    assert len([s for s in spans if s.name == "process orders"]) == 4
