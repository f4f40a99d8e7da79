"""After traffic, the API's /metrics page exposes the messaging metrics by the names dashboards query."""

from __future__ import annotations

import dramatiq
from fastapi.testclient import TestClient

from api.app import create_app
from api.health import Checks
from observability import Metrics
from observability.sdk import prometheus_meter_provider
from tests.api_support import AUTH, api_keys, sqlite_uow
from tests.conftest import drain, make_stub_broker

ORDER = {"order_id": "m-1", "customer_email": "ada@example.com", "lines": [{"sku": "APPLE", "quantity": 1}]}


def test_metrics_page_after_sends_and_processing() -> None:
    """Two accepted orders: sent and consumed counters, process and publish durations, by queue and actor."""
    provider, render = prometheus_meter_provider()
    broker = make_stub_broker()
    broker.add_middleware(Metrics(meter_provider=provider))

    @dramatiq.actor(actor_name="place_order", queue_name="orders", broker=broker)
    def place_order(payload: dict) -> None:
        pass

    app = create_app(
        broker=broker,
        actors={"orders": place_order, "users": place_order, "catalog": place_order},
        jaeger_url="http://jaeger:16686",
        max_body_bytes=65536,
        checks=Checks(render_metrics=render),
        api_keys=api_keys(),
        uow=sqlite_uow(),
    )
    client = TestClient(app, headers=AUTH)
    for order_id in ("m-1", "m-2"):
        assert client.post("/orders", json={**ORDER, "order_id": order_id}).status_code == 202
    drain(broker, "orders")

    page = client.get("/metrics").text
    sent = [line for line in page.splitlines() if line.startswith("messaging_client_sent_messages_total{")]
    consumed = [line for line in page.splitlines() if line.startswith("messaging_client_consumed_messages_total{")]
    assert len(sent) == 1 and sent[0].endswith(" 2.0")
    assert 'messaging_destination_name="orders"' in sent[0]
    assert len(consumed) == 1 and consumed[0].endswith(" 2.0")
    assert 'dramatiq_actor_name="place_order"' in consumed[0]
    for name in ("messaging_process_duration_seconds_count", "messaging_client_operation_duration_seconds_count"):
        assert any(line.startswith(name) for line in page.splitlines()), name
