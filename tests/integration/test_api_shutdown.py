"""A real ``uvicorn api.main:app`` stopped with SIGTERM still delivers the spans of its last requests.

uvicorn re-raises SIGTERM after its graceful shutdown, so the SDK's atexit flush never runs: without the
app's lifespan flush, whatever the span queue held is lost on every deploy. The span queue's delay is
set to 10 minutes here, so only a shutdown flush can deliver anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from otlp_receiver import OtlpReceiver
from tests.api_support import AUTH, KEY
from tests.environment.api import api_argv, api_url, wait_until_live
from tests.environment.database import migrated_sqlite_url
from tests.environment.ports import free_port
from tests.environment.processes import ServiceProcess

ORDER = {"order_id": "shutdown-1", "customer_email": "ada@example.com", "lines": [{"sku": "APPLE", "quantity": 1}]}


@pytest.fixture
def api(tmp_path: Path, otlp_receiver: OtlpReceiver) -> Iterator[tuple[ServiceProcess, str, OtlpReceiver]]:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update(
        BROKER_URL="memory://",  # the in-process broker: this test is about the API's own exit
        DATABASE_URL=migrated_sqlite_url(tmp_path / "api.db"),
        API_KEYS=KEY,
        HEALTH_PORT="0",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_SERVICE_NAME="tracedq-api-test",
        OTEL_BSP_SCHEDULE_DELAY="600000",
        OTEL_LOGS_EXPORTER="otlp",
        OTEL_BLRP_SCHEDULE_DELAY="600000",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.endpoint,
    )
    url = api_url(port)
    process = ServiceProcess(api_argv(port), env, tmp_path, name="api", base_url=url).start()
    try:
        yield process, url, otlp_receiver
    finally:
        process.kill()


@pytest.mark.timeout(120)
def test_sigterm_flushes_the_spans_and_logs_of_the_last_requests(
    api: tuple[ServiceProcess, str, OtlpReceiver],
) -> None:
    process, base_url, receiver = api
    wait_until_live(process, base_url)

    accepted = httpx.post(f"{base_url}/orders", json=ORDER, headers=AUTH, timeout=10)
    assert accepted.status_code == 202, accepted.text
    assert receiver.spans == []  # nothing leaves before the 10 min batch delay...

    process.terminate(timeout=60)  # ...except through the shutdown flush

    spans = {span.name: span for span in receiver.spans}
    assert {"POST /orders", "send orders"} <= set(spans), (sorted(spans), process.describe())
    trace_id = accepted.json()["trace_id"]
    assert spans["send orders"].trace_id == trace_id == spans["POST /orders"].trace_id
    assert spans["send orders"].resource["service.name"] == "tracedq-api-test"
    assert receiver.errors == []
