"""A real ``uvicorn api.main:app`` on RabbitMQ (a vhost of its own): what its logs, ``/metrics`` and readiness
look like.

The API imports ``actors.broker`` like every process; it must not get the worker tree's metrics reader
(that reader, never collected by the API's provider, logged a warning on every scrape).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.schema import head_revision
from tests.api_support import AUTH, KEY
from tests.environment.api import api_argv, api_url, wait_until_live
from tests.environment.database import migrated_sqlite_url
from tests.environment.ports import free_port
from tests.environment.processes import ServiceProcess
from tests.environment.vhost import VhostProbe, own_vhost

pytestmark = pytest.mark.rabbitmq

ORDER = {"order_id": "api-1", "customer_email": "ada@example.com", "lines": [{"sku": "SKU-APPLE", "quantity": 1}]}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[ServiceProcess, str]]:
    """``make api``'s command and environment (Prometheus metrics), in a vhost of its own, on a migrated database."""
    with _running_api(tmp_path, migrated_sqlite_url(tmp_path / "api.db")) as running:
        yield running


@contextlib.contextmanager
def _running_api(tmp_path: Path, database_url: str) -> Iterator[tuple[ServiceProcess, str]]:
    port = free_port()
    with own_vhost("tracedq_api") as vhost:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "LOG_", "HEALTH_"))}
        env.update(
            BROKER_URL=VhostProbe(vhost).broker_url,
            DATABASE_URL=database_url,
            API_KEYS=KEY,
            OTEL_METRICS_EXPORTER="prometheus",
            OTEL_TRACES_EXPORTER="none",
        )
        url = api_url(port)
        process = ServiceProcess(api_argv(port), env, tmp_path, name="api", base_url=url).start()
        try:
            wait_until_live(process, url)
            yield process, url
        finally:
            process.kill()


def _log_records(process: ServiceProcess) -> list[dict]:
    return [json.loads(line) for line in process.output().splitlines() if line.startswith("{")]


@pytest.mark.timeout(120)
def test_metrics_scrapes_log_no_warning_and_count_the_sends(api: tuple[ServiceProcess, str]) -> None:
    process, base_url = api
    assert httpx.post(f"{base_url}/orders", json=ORDER, headers=AUTH, timeout=30).status_code == 202
    pages = [httpx.get(f"{base_url}/metrics", timeout=10) for _ in range(2)]
    assert process.terminate() == -signal.SIGTERM, process.describe()  # uvicorn re-raises SIGTERM once drained

    assert [page.status_code for page in pages] == [200, 200]
    sent = [line for line in pages[1].text.splitlines() if line.startswith("messaging_client_sent_messages_total{")]
    assert len(sent) == 1 and sent[0].endswith(" 1.0"), sent
    assert 'messaging_destination_name="orders"' in sent[0]
    assert any(line.startswith("http_server_duration_milliseconds_count{") for line in pages[1].text.splitlines())
    samples = [line for line in pages[1].text.splitlines() if not line.startswith("#")]
    assert len(samples) == len(set(samples)), "no sample twice"
    warnings = [record for record in _log_records(process) if record.get("level") in ("warning", "error")]
    assert warnings == [], warnings


@pytest.mark.timeout(120)
def test_every_log_line_is_json_and_pika_says_nothing_at_info(api: tuple[ServiceProcess, str]) -> None:
    """uvicorn's startup and access lines go through the JSON setup; pika's connection chatter stays out."""
    process, base_url = api
    assert httpx.post(f"{base_url}/orders?source=test", json=ORDER, headers=AUTH, timeout=30).status_code == 202
    assert httpx.get(f"{base_url}/health/live", timeout=10).status_code == 200
    assert process.terminate() == -signal.SIGTERM, process.describe()

    lines = [line for line in process.output().splitlines() if line.strip()]
    not_json = [line for line in lines if not line.startswith("{")]
    assert not_json == [], not_json
    records = [json.loads(line) for line in lines]
    assert [r for r in records if str(r.get("logger", "")).startswith("pika")] == []
    access = [
        {key: r.get(key) for key in ("event", "level", "method", "path", "status")}
        for r in records
        if r.get("logger") == "uvicorn.access"
    ]
    assert access == [
        {"event": "http_request", "level": "info", "method": "GET", "path": "/health/live", "status": 200},
        {"event": "http_request", "level": "info", "method": "POST", "path": "/orders", "status": 202},
        {"event": "http_request", "level": "info", "method": "GET", "path": "/health/live", "status": 200},
    ]
    assert "127.0.0.1" not in "".join(str(r) for r in records if r.get("logger") == "uvicorn.access")
    started = [r["event"] for r in records if r.get("logger") == "uvicorn.error"]
    assert started[:2] == [f"Started server process [{process.proc.pid}]", "Waiting for application startup."]


@pytest.mark.timeout(120)
def test_ready_says_the_schema_is_behind_until_upgraded(tmp_path: Path) -> None:
    """An empty database: 503 naming the revision the code needs; ``python -m actors.db upgrade``; then 200."""
    with _running_api(tmp_path, f"sqlite:///{tmp_path / 'empty.db'}") as (process, base_url):
        _ready_after_upgrade(process, base_url, f"sqlite:///{tmp_path / 'empty.db'}")


def _ready_after_upgrade(process: ServiceProcess, base_url: str, database_url: str) -> None:
    head = head_revision()
    behind = httpx.get(f"{base_url}/health/ready", timeout=10)
    assert (behind.status_code, behind.json()) == (
        503,
        {
            "ready": False,
            "checks": {
                "broker": {"ok": True},
                "database": {"ok": False, "error": f"SchemaBehind: schema behind (at none, code needs {head})"},
            },
        },
    )

    env = {**os.environ, "DATABASE_URL": database_url, "BROKER_URL": "memory://"}
    done = subprocess.run(
        [sys.executable, "-m", "actors.db", "upgrade"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    ready = httpx.get(f"{base_url}/health/ready", timeout=10)
    assert (ready.status_code, ready.json()) == (
        200,
        {"ready": True, "checks": {"broker": {"ok": True}, "database": {"ok": True}}},
    )
    assert process.running, process.describe()
