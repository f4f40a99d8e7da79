"""Dashboards and alert rules query what the code really emits: checked against a real metrics scrape.

The scrape comes from a run of the real middleware, API and worker health page: a StubBroker worker
processes successes, a retry, an exhausted failure, a skip, a redelivery, an unknown actor and a failed
publish; the API accepts an order; a heartbeat is written. Every metric name, matcher label and grouping
label in a PromQL query must appear in that scrape. RabbitMQ's names are checked against a real RabbitMQ
scrape in tests/integration/test_dashboard_rabbitmq_metrics.py.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import yaml
from dramatiq.middleware import SkipMessage
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider

from api.app import create_app
from api.health import Checks
from observability import Metrics
from observability.sdk import prometheus_meter_provider
from observability.sdk.export_metrics import observe_span_export
from observability.sdk.span_pipe import PipeSpanProcessor
from tests.api_support import AUTH, api_keys, sqlite_uow
from tests.conftest import drain, make_stub_broker
from tests.environment.ports import bound_port
from tests.grafana_queries import (
    DASHBOARDS_DIR,
    DATASOURCES_FILE,
    GRAFANA_DIR,
    Query,
    alert_queries,
    alert_rules,
    dashboard_queries,
    exposition_labels,
    usage,
    walk,
)
from worker_health.health_server import HealthServer, _process_start
from worker_health.heartbeat_files import write_heartbeat

ORDER = {"order_id": "d-1", "customer_email": "ada@example.com", "lines": [{"sku": "APPLE", "quantity": 1}]}
QUERIES = dashboard_queries() + alert_queries()


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("grafana_generate", GRAFANA_DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Sample name -> label names, from the pages Prometheus scrapes after a run that exercises every path."""
    provider, render = prometheus_meter_provider()
    broker = make_stub_broker()
    broker.add_middleware(Metrics(meter_provider=provider))

    class Mark(dramatiq.Middleware):
        """Redelivered flag (RabbitMQ's proxy sets it) and a middleware skip, on chosen actors."""

        def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
            if message.actor_name == "redelivered":
                message.redelivered = True
            if message.actor_name == "stale_tick":
                raise SkipMessage("stale")

    broker.add_middleware(Mark())
    attempts: list[int] = []

    @dramatiq.actor(actor_name="place_order", queue_name="orders", broker=broker)
    def place_order(payload: dict[str, Any]) -> None:
        pass

    @dramatiq.actor(actor_name="flaky", queue_name="orders", broker=broker)
    def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise dramatiq.Retry(delay=1)

    @dramatiq.actor(actor_name="broken", queue_name="orders", broker=broker, max_retries=0)
    def broken() -> None:
        raise ValueError("boom")

    @dramatiq.actor(actor_name="redelivered", queue_name="orders", broker=broker)
    def redelivered() -> None:
        pass

    @dramatiq.actor(actor_name="stale_tick", queue_name="orders", broker=broker)
    def stale_tick() -> None:
        pass

    app = create_app(
        broker=broker,
        actors={"orders": place_order, "users": place_order, "catalog": place_order},
        jaeger_url="http://jaeger:16686",
        max_body_bytes=65536,
        checks=Checks(render_metrics=render),
        api_keys=api_keys(),
        uow=sqlite_uow(),
        meter_provider=provider,
    )
    client = TestClient(app, headers=AUTH)
    assert client.post("/orders", json=ORDER).status_code == 202
    for actor in (flaky, broken, redelivered, stale_tick):
        actor.send()
    broker.enqueue(dramatiq.Message(queue_name="orders", actor_name="ghost", args=(), kwargs={}, options={}))
    with pytest.raises(dramatiq.errors.QueueNotFound):
        broker.enqueue(dramatiq.Message(queue_name="missing", actor_name="broken", args=(), kwargs={}, options={}))
    drain(broker, "orders", fail_fast=False)

    # The span export's own health: an export process whose collector refuses every connection.
    with bound_port() as refused_port:
        environ = {
            **os.environ,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{refused_port}/v1/traces",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0.5",
        }
        processor = PipeSpanProcessor(environ=environ, max_queue_size=4, max_export_batch_size=2)
        observe_span_export(provider, processor)
        tracer = TracerProvider()
        tracer.add_span_processor(processor)
        for _ in range(20):
            tracer.get_tracer("tests").start_span("lost").end()
        processor.force_flush()
    page = client.get("/metrics").text
    tracer.shutdown()
    provider.shutdown()

    heartbeats = tmp_path_factory.mktemp("heartbeats")
    parent = os.getppid()
    write_heartbeat(heartbeats, pid=os.getpid(), main_pid=parent, main_start=_process_start(parent), state="idle")
    health = HealthServer(heartbeat_dir=heartbeats, broker_url="amqp://unused", database_url="sqlite://")
    page += health.heartbeat_exposition().decode()

    labels = exposition_labels(page)
    assert labels["messaging_process_duration_seconds_count"] >= {"dramatiq_actor_name", "error_type"}
    assert "error_type" in labels["otel_sdk_processor_span_processed_total"]
    return labels


def promoted_labels() -> set[str]:
    """Labels Prometheus' OTLP receiver adds to every series: the resource attributes compose/prometheus.yml
    promotes (service.name -> service_name), plus job and instance."""
    config = yaml.safe_load((GRAFANA_DIR.parent / "prometheus.yml").read_text(encoding="utf-8"))
    return {name.replace(".", "_") for name in config["otlp"]["promote_resource_attributes"]} | {"job", "instance"}


def test_committed_dashboards_are_the_generated_ones() -> None:
    generate = load_generator()
    committed = {path.name for path in DASHBOARDS_DIR.glob("*.json")}
    assert committed == set(generate.DASHBOARDS), "run: python compose/grafana/generate.py"
    for name, build in generate.DASHBOARDS.items():
        text = (DASHBOARDS_DIR / name).read_text(encoding="utf-8")
        assert text == generate.render(build), f"{name} is stale: run python compose/grafana/generate.py"


def test_there_are_queries_to_check() -> None:
    wheres = {query.where.split(":")[0] for query in QUERIES}
    assert {"tracedq-actors.json", "tracedq-queues.json", "tracedq-latency.json"} <= wheres
    assert len(alert_queries()) == len(alert_rules()) >= 6


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.where)
def test_query_parses_and_uses_emitted_metrics_and_labels(query: Query, scraped: dict[str, set[str]]) -> None:
    used = usage(query.expr)
    assert used.selectors, query
    app_selectors = {name: labels for name, labels in used.selectors.items() if not name.startswith("rabbitmq_")}
    for name, matcher_labels in app_selectors.items():
        assert name in scraped, f"{query.where}: {name} is not emitted by the code"
        assert matcher_labels <= scraped[name], f"{query.where}: {name} has no {matcher_labels - scraped[name]}"
    if app_selectors and len(app_selectors) == len(used.selectors):
        available = set().union(*(scraped[name] for name in app_selectors)) | {"le"} | promoted_labels()
        assert used.grouping <= available, f"{query.where}: no such label {used.grouping - available}"


def test_every_datasource_reference_is_provisioned() -> None:
    uids = {source["uid"] for source in yaml.safe_load(DATASOURCES_FILE.read_text(encoding="utf-8"))["datasources"]}
    for path in DASHBOARDS_DIR.glob("*.json"):
        for key, value in walk(yaml.safe_load(path.read_text(encoding="utf-8"))):
            if key == "datasource" and isinstance(value, dict):
                assert value["uid"] in uids, (path.name, value)
    for rule in alert_rules():
        for step in rule["data"]:
            assert step["datasourceUid"] in uids | {"__expr__"}, rule["title"]


def test_alert_rules_are_complete_and_unique() -> None:
    rules = alert_rules()
    assert len({rule["uid"] for rule in rules}) == len(rules)
    titles = {rule["title"] for rule in rules}
    assert {
        "Dead-letter queue growing",
        "Actor error ratio high",
        "Queue backlog past threshold",
        "Queue wait time past threshold",
        "No worker consuming a queue",
    } <= titles
    for rule in rules:
        refs = {step["refId"] for step in rule["data"]}
        assert rule["condition"] in refs, rule["title"]
        condition = next(step for step in rule["data"] if step["refId"] == rule["condition"])
        assert condition["model"]["expression"] in refs, rule["title"]
        assert rule["labels"]["severity"] in ("page", "warn"), rule["title"]
        assert rule["annotations"]["summary"], rule["title"]


def test_alert_provisioning_has_no_environment_references() -> None:
    # Grafana expands $NAME in provisioning files from its environment: `{{ $labels.x }}` would be emptied.
    for path in Path(GRAFANA_DIR / "provisioning" / "alerting").glob("*.yaml"):
        body = "\n".join(line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#"))
        assert "$" not in body, path.name
