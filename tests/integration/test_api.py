"""The producer API against real RabbitMQ: 202 only after a confirmed publish, 503 while it is down, then back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import dramatiq
import pika
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import actors
from actors.broker import build_broker
from actors.settings import Settings
from api.app import create_app
from api.health import Checks
from tests.api_support import AUTH, api_keys, sqlite_uow
from tests.environment.servers import RABBITMQ_URL, require_rabbitmq
from tests.spans import is_child, named
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.rabbitmq

ORDER = {"order_id": "api-1", "customer_email": "ada@example.com", "lines": [{"sku": "APPLE", "quantity": 1}]}
ROUTES: dict[str, dramatiq.Actor[Any, Any]] = {
    "orders": actors.place_order,
    "users": actors.register_user,
    "catalog": actors.catalog.refresh_catalog_cache,
}


def purge(queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    channel = connection.channel()
    channel.queue_declare(queue, passive=True)
    channel.queue_purge(queue)
    connection.close()


def queued(queue: str) -> list[dict[str, Any]]:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    channel = connection.channel()
    bodies = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        bodies.append(json.loads(body))
    connection.close()
    return bodies


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    """RabbitMQ behind a proxy the test can cut."""
    require_rabbitmq()
    with TcpProxy(("127.0.0.1", 5672)) as running:
        yield running


@pytest.fixture
def client(proxy: TcpProxy, span_exporter: InMemorySpanExporter) -> Iterator[TestClient]:
    broker = build_broker(Settings(broker_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/"))
    broker.declare_queue("orders", ensure=True)
    purge("orders")
    app = create_app(
        broker=broker,
        actors=ROUTES,
        jaeger_url="http://jaeger:16686",
        max_body_bytes=4096,
        checks=Checks(),
        api_keys=api_keys(),
        uow=sqlite_uow(),
    )
    with TestClient(app, headers=AUTH) as test_client:
        yield test_client
    broker.close()


def test_202_ids_match_the_queued_message_and_its_spans(
    client: TestClient, span_exporter: InMemorySpanExporter
) -> None:
    """The 202 names the message now in RabbitMQ and the trace whose send span published it."""
    response = client.post("/orders", json=ORDER)
    assert response.status_code == 202
    body = response.json()
    assert body["trace_url"] == f"http://jaeger:16686/trace/{body['trace_id']}"
    [message] = queued("orders")
    assert message["message_id"] == body["message_id"]
    assert message["args"] == [{**ORDER, "schema_version": 1}]  # the wire form: version made explicit
    [send] = named(span_exporter.get_finished_spans(), "send orders")
    [server] = [s for s in span_exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert send.attributes["messaging.message.id"] == body["message_id"]
    assert format(send.context.trace_id, "032x") == body["trace_id"]
    assert is_child(send, server)
    assert server.name == "POST /orders"
    assert message["options"]["trace_context"]["traceparent"].split("-")[2] == format(send.context.span_id, "016x")


def test_a_caller_traceparent_is_continued(client: TestClient) -> None:
    """A request carrying W3C traceparent joins the caller's trace."""
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = client.post(
        "/users",
        json={"user_id": "u-1", "email": "grace@example.com", "name": "Grace"},
        headers={"traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"},
    )
    assert response.status_code == 202
    assert response.json()["trace_id"] == caller_trace


def test_broker_down_is_503_and_the_api_recovers_by_itself(client: TestClient, proxy: TcpProxy) -> None:
    """RabbitMQ unreachable: 503 with a clear body, nothing queued; once it is back, 202 again."""
    assert client.post("/orders", json=ORDER).status_code == 202
    proxy.stop()
    down = client.post("/orders", json={**ORDER, "order_id": "api-2"})
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "broker_unavailable"
    assert "nothing was queued" in down.json()["error"]["message"]
    proxy.start()
    back = client.post("/orders", json={**ORDER, "order_id": "api-3"})
    assert back.status_code == 202
    assert [m["args"][0]["order_id"] for m in queued("orders")] == ["api-1", "api-3"]
