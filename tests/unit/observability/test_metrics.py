"""Exact metric data points from the ``Metrics`` middleware on a StubBroker, wherever it sits in the list."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import SkipMessage
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from observability import LogContext, Metrics
from observability.metrics import DURATION_BUCKETS
from observability.sdk import prometheus_meter_provider
from observability.sdk.metrics_setup import _metric_readers, configure_metrics
from tests.conftest import drain, make_stub_broker

STUB = {"messaging.system": "dramatiq", "messaging.destination.name": "work"}


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """metric name -> [(attributes, value or histogram count)], every data point collected so far."""
    data = reader.get_metrics_data()
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for resource_metrics in data.resource_metrics if data else []:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    value = point.count if isinstance(point, HistogramDataPoint) else point.value
                    found.setdefault(metric.name, []).append((dict(point.attributes), value))
    return {name: sorted(rows, key=repr) for name, rows in found.items()}


def histogram_sum(reader: InMemoryMetricReader, name: str) -> float:
    total = 0.0
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else []:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points if metric.name == name else []:
                    assert isinstance(point, HistogramDataPoint)
                    total += point.sum
    return total


def rows(*pairs: tuple[dict[str, Any], Any]) -> list[tuple[dict[str, Any], Any]]:
    return sorted(pairs, key=repr)


@pytest.fixture(params=["appended", "after_log_context"])
def metered(request: pytest.FixtureRequest) -> Iterator[tuple[StubBroker, InMemoryMetricReader]]:
    """A traced StubBroker with ``Metrics`` appended last (after Retries) or right after LogContext."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    broker = make_stub_broker()
    if request.param == "appended":
        broker.add_middleware(Metrics(meter_provider=provider))
    else:
        broker.add_middleware(Metrics(meter_provider=provider), after=LogContext)
    yield broker, reader
    broker.flush_all()
    broker.close()
    provider.shutdown()


def test_successes_are_counted_once_each(metered: tuple[StubBroker, InMemoryMetricReader]) -> None:
    """N successes: N sent, N consumed, N process durations with outcome success, in_flight back to 0."""
    broker, reader = metered

    @dramatiq.actor(actor_name="ok", queue_name="work", broker=broker)
    def ok(x: int) -> None:
        pass

    for i in range(3):
        ok.send(i)
    drain(broker)

    labels = {**STUB, "dramatiq.actor.name": "ok"}
    assert points(reader) == {
        "messaging.client.sent.messages": [({**labels, "messaging.operation.name": "send"}, 3)],
        "messaging.client.operation.duration": [({**labels, "messaging.operation.name": "send"}, 3)],
        "messaging.client.consumed.messages": [({**labels, "messaging.operation.name": "process"}, 3)],
        "messaging.process.duration": [
            ({**labels, "messaging.operation.name": "process", "dramatiq.message.outcome": "success"}, 3)
        ],
        "dramatiq.messages.in_flight": [(labels, 0)],
        "dramatiq.message.queue_wait": [(labels, 3)],
        "dramatiq.message.end_to_end.duration": [({**labels, "dramatiq.message.outcome": "success"}, 3)],
    }


def test_retry_is_counted_once_on_the_canonical_queue(metered: tuple[StubBroker, InMemoryMetricReader]) -> None:
    """One Retry then success: retried == 1 (Dramatiq's Prometheus says 2), no ``work.DQ`` label anywhere."""
    broker, reader = metered
    calls: list[int] = []

    @dramatiq.actor(actor_name="flaky", queue_name="work", broker=broker)
    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise dramatiq.Retry(delay=10)

    flaky.send()
    drain(broker)

    labels = {**STUB, "dramatiq.actor.name": "flaky"}
    process = {**labels, "messaging.operation.name": "process"}
    found = points(reader)
    assert found["dramatiq.messages.retried"] == [(labels, 1)]
    # the first send and the retry's publish to work.DQ; the worker's DQ -> work hop is not a send
    assert found["messaging.client.sent.messages"] == [({**labels, "messaging.operation.name": "send"}, 2)]
    assert found["messaging.client.consumed.messages"] == [(process, 2)]
    assert found["messaging.process.duration"] == rows(
        ({**process, "dramatiq.message.outcome": "retrying"}, 1),
        ({**process, "dramatiq.message.outcome": "success"}, 1),
    )
    assert "work.DQ" not in repr(found)
    # End to end is recorded once, at the final outcome, and spans the retry's delay (10 ms).
    assert found["dramatiq.message.end_to_end.duration"] == [({**labels, "dramatiq.message.outcome": "success"}, 1)]
    assert histogram_sum(reader, "dramatiq.message.end_to_end.duration") >= 0.010


def test_exhausted_retries_dead_letter_once(metered: tuple[StubBroker, InMemoryMetricReader]) -> None:
    """A failure retried once and then exhausted: retried == 1, dead_lettered == 1, both with error.type."""
    broker, reader = metered

    @dramatiq.actor(actor_name="bad", queue_name="work", broker=broker, max_retries=1, min_backoff=1, max_backoff=5)
    def bad() -> None:
        raise ValueError("boom")

    bad.send()
    drain(broker, fail_fast=False)

    labels = {**STUB, "dramatiq.actor.name": "bad"}
    process = {**labels, "messaging.operation.name": "process", "error.type": "ValueError"}
    found = points(reader)
    assert found["dramatiq.messages.retried"] == [(labels, 1)]
    assert found["dramatiq.messages.dead_lettered"] == [
        ({**labels, "dramatiq.message.dead_letter_reason": "retries_exhausted"}, 1)
    ]
    assert found["messaging.process.duration"] == rows(
        ({**process, "dramatiq.message.outcome": "retrying"}, 1),
        ({**process, "dramatiq.message.outcome": "dead_lettered"}, 1),
    )
    assert found["dramatiq.messages.in_flight"] == [(labels, 0)]
    assert found["dramatiq.message.end_to_end.duration"] == [
        ({**labels, "dramatiq.message.outcome": "dead_lettered"}, 1)
    ]


def test_thrown_exception_dead_letters_without_error_type(metered: tuple[StubBroker, InMemoryMetricReader]) -> None:
    """An exception listed in ``throws`` is an outcome, not an error: no retry, no error.type."""
    broker, reader = metered

    @dramatiq.actor(actor_name="strict", queue_name="work", broker=broker, throws=(KeyError,))
    def strict() -> None:
        raise KeyError("nope")

    strict.send()
    drain(broker, fail_fast=False)

    labels = {**STUB, "dramatiq.actor.name": "strict"}
    found = points(reader)
    assert "dramatiq.messages.retried" not in found
    assert found["dramatiq.messages.dead_lettered"] == [
        ({**labels, "dramatiq.message.dead_letter_reason": "throws"}, 1)
    ]
    assert found["messaging.process.duration"] == [
        ({**labels, "messaging.operation.name": "process", "dramatiq.message.outcome": "dead_lettered"}, 1)
    ]


def test_skip_is_counted(metered: tuple[StubBroker, InMemoryMetricReader]) -> None:
    """A middleware skip that does not fail the message: skipped == 1, outcome skipped, nothing dead."""
    broker, reader = metered

    class SkipAll(dramatiq.Middleware):
        def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
            raise SkipMessage("stale tick")

    broker.add_middleware(SkipAll())

    @dramatiq.actor(actor_name="tick", queue_name="work", broker=broker)
    def tick() -> None:
        raise AssertionError("must not run")

    tick.send()
    drain(broker)

    labels = {**STUB, "dramatiq.actor.name": "tick"}
    found = points(reader)
    assert found["dramatiq.messages.skipped"] == [(labels, 1)]
    assert found["messaging.process.duration"] == [
        ({**labels, "messaging.operation.name": "process", "dramatiq.message.outcome": "skipped"}, 1)
    ]
    assert "dramatiq.messages.dead_lettered" not in found
    assert found["dramatiq.messages.in_flight"] == [(labels, 0)]


def test_age_limit_skip_is_skipped_and_dead_lettered(metered: tuple[StubBroker, InMemoryMetricReader]) -> None:
    """AgeLimit (before or after Metrics in the list) fails and skips: skipped == 1, dead_lettered == 1."""
    broker, reader = metered

    @dramatiq.actor(actor_name="stale", queue_name="work", broker=broker)
    def stale() -> None:
        raise AssertionError("must not run")

    message = stale.message_with_options(max_age=1000)
    broker.enqueue(message.copy(message_timestamp=message.message_timestamp - 60_000))
    drain(broker, fail_fast=False)

    labels = {**STUB, "dramatiq.actor.name": "stale"}
    found = points(reader)
    assert found["dramatiq.messages.skipped"] == [(labels, 1)]
    assert found["dramatiq.messages.dead_lettered"] == [
        ({**labels, "dramatiq.message.dead_letter_reason": "skipped"}, 1)
    ]
    assert found["messaging.client.consumed.messages"] == [({**labels, "messaging.operation.name": "process"}, 1)]


def test_unknown_actor_is_dead_lettered_without_its_name(metered: tuple[StubBroker, InMemoryMetricReader]) -> None:
    """A message for an undeclared actor never reaches the process hooks; it is still dead_lettered == 1."""
    broker, reader = metered

    @dramatiq.actor(actor_name="known", queue_name="work", broker=broker)
    def known() -> None:
        pass

    broker.enqueue(dramatiq.Message(queue_name="work", actor_name="ghost", args=(), kwargs={}, options={}))
    drain(broker, fail_fast=False)

    found = points(reader)
    assert found["dramatiq.messages.dead_lettered"] == [
        ({**STUB, "dramatiq.message.dead_letter_reason": "actor_not_found"}, 1)
    ]
    assert found["messaging.client.consumed.messages"] == [({**STUB, "messaging.operation.name": "process"}, 1)]
    assert "messaging.process.duration" not in found


def test_redelivered_flag_is_counted(metered: tuple[StubBroker, InMemoryMetricReader]) -> None:
    """RabbitMQ's proxy carries ``redelivered``; such deliveries are counted (set here by hand)."""
    broker, reader = metered

    class MarkRedelivered(dramatiq.Middleware):
        def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
            message.redelivered = True

    broker.add_middleware(MarkRedelivered())

    @dramatiq.actor(actor_name="ok", queue_name="work", broker=broker)
    def ok() -> None:
        pass

    ok.send()
    drain(broker)
    assert points(reader)["dramatiq.messages.redelivered"] == [({**STUB, "dramatiq.actor.name": "ok"}, 1)]


def test_failed_publish_is_counted_with_error_type(metered: tuple[StubBroker, InMemoryMetricReader]) -> None:
    """A publish that raises is a sent attempt with error.type, and the error still reaches the caller."""
    broker, reader = metered

    @dramatiq.actor(actor_name="ok", queue_name="work", broker=broker)
    def ok() -> None:
        pass

    with pytest.raises(dramatiq.errors.QueueNotFound):
        broker.enqueue(dramatiq.Message(queue_name="missing", actor_name="ok", args=(), kwargs={}, options={}))

    attributes = {
        "messaging.system": "dramatiq",
        "messaging.destination.name": "missing",
        "messaging.operation.name": "send",
        "dramatiq.actor.name": "ok",
        "error.type": "dramatiq.errors.QueueNotFound",
    }
    assert points(reader)["messaging.client.sent.messages"] == [(attributes, 1)]


def test_a_broken_meter_provider_loses_no_message() -> None:
    """Hooks never raise: a provider that fails leaves the actor running and the message acked."""

    class Broken(MeterProvider):
        def get_meter(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("broken")

    broker = make_stub_broker()
    broker.add_middleware(Metrics(meter_provider=Broken()))
    ran: list[int] = []

    @dramatiq.actor(actor_name="ok", queue_name="work", broker=broker)
    def ok() -> None:
        ran.append(1)

    ok.send()
    drain(broker)
    assert ran == [1]
    assert broker.dead_letters == []


def test_histograms_use_the_semconv_buckets(metered: tuple[StubBroker, InMemoryMetricReader]) -> None:
    """Both messaging duration histograms use the conventions' advisory boundaries."""
    broker, reader = metered

    @dramatiq.actor(actor_name="ok", queue_name="work", broker=broker)
    def ok() -> None:
        pass

    ok.send()
    drain(broker)
    data = reader.get_metrics_data()
    bounds = {
        metric.name: tuple(metric.data.data_points[0].explicit_bounds)
        for metric in data.resource_metrics[0].scope_metrics[0].metrics
        if metric.name in ("messaging.process.duration", "messaging.client.operation.duration")
    }
    assert bounds == {
        "messaging.process.duration": DURATION_BUCKETS,
        "messaging.client.operation.duration": DURATION_BUCKETS,
    }


def test_prometheus_exposition_names() -> None:
    """The names Prometheus scrapes (what dashboards must query), rendered from a real run."""
    provider, render = prometheus_meter_provider()
    broker = make_stub_broker()
    broker.add_middleware(Metrics(meter_provider=provider))
    calls: list[int] = []

    @dramatiq.actor(actor_name="flaky", queue_name="work", broker=broker)
    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise dramatiq.Retry(delay=10)

    flaky.send()
    broker.enqueue(dramatiq.Message(queue_name="work", actor_name="ghost", args=(), kwargs={}, options={}))
    drain(broker, fail_fast=False)
    text = render().decode()
    provider.shutdown()

    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M))
    assert families == {
        "target_info": "gauge",
        "messaging_client_sent_messages_total": "counter",
        "messaging_client_operation_duration_seconds": "histogram",
        "messaging_client_consumed_messages_total": "counter",
        "messaging_process_duration_seconds": "histogram",
        "dramatiq_messages_retried_total": "counter",
        "dramatiq_messages_dead_lettered_total": "counter",
        "dramatiq_messages_in_flight": "gauge",
        "dramatiq_message_queue_wait_seconds": "histogram",
        "dramatiq_message_end_to_end_duration_seconds": "histogram",
    }
    consumed = re.findall(r"^messaging_client_consumed_messages_total\{(.*)\} (\S+)$", text, flags=re.M)
    assert sorted(value for _, value in consumed) == ["1.0", "2.0"]
    assert any(
        'dramatiq_actor_name="flaky"' in labels and 'messaging_destination_name="work"' in labels
        for labels, _ in consumed
    )
    assert re.search(r'^dramatiq_messages_retried_total\{.*dramatiq_actor_name="flaky".*\} 1\.0$', text, flags=re.M)
    assert re.search(r'dramatiq_message_dead_letter_reason="actor_not_found"', text)
    assert 'dramatiq_message_outcome="retrying"' in text
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(samples) == len(set(samples)), "a flush before the scrape must not duplicate samples"


def test_metrics_exporter_is_chosen_from_the_environment() -> None:
    """OTEL_METRICS_EXPORTER: none (or unset) gives no reader, a list gives one each, unknown names fail."""
    assert _metric_readers({}) == []
    assert _metric_readers({"OTEL_METRICS_EXPORTER": "none"}) == []
    readers = _metric_readers({"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_METRIC_EXPORT_INTERVAL": "60000"})
    try:
        assert [type(reader).__name__ for reader in readers] == ["PullOnlyPrometheusReader"]
    finally:
        for reader in readers:
            reader.shutdown()  # unregisters from prometheus_client.REGISTRY
    with pytest.raises(ValueError, match="zipkin"):
        _metric_readers({"OTEL_METRICS_EXPORTER": "zipkin"})


def test_an_extra_reader_left_unused_leaves_its_registry(caplog: pytest.LogCaptureFixture) -> None:
    """An extra Prometheus reader no provider takes is shut down: a scrape of its registry warns about nothing."""
    from prometheus_client import CollectorRegistry, generate_latest

    from observability.sdk.prometheus import PullOnlyPrometheusReader

    registry = CollectorRegistry()
    configure_metrics(
        extra_readers=[PullOnlyPrometheusReader(registry=registry)], environ={"OTEL_SDK_DISABLED": "true"}
    )
    with caplog.at_level("WARNING"):
        assert generate_latest(registry) == b""
    assert caplog.records == []


def test_merged_worker_pages_keep_one_family_per_name() -> None:
    """Two worker processes' pages become one valid page, each sample labelled with its process."""
    from prometheus_client.parser import text_string_to_metric_families

    from observability.sdk.prometheus import merge_expositions

    page = (
        b'# HELP jobs_total Jobs.\n# TYPE jobs_total counter\njobs_total{queue="q"} 3.0\n'
        b"# HELP wait_seconds Wait.\n# TYPE wait_seconds histogram\n"
        b'wait_seconds_bucket{le="1.0"} 1.0\nwait_seconds_bucket{le="+Inf"} 2.0\n'
        b"wait_seconds_sum 3.5\nwait_seconds_count 2.0\n"
    )
    merged = merge_expositions({"101": page, "102": page.replace(b"3.0", b"5.0")}, label="worker_pid")
    families = {family.name: family for family in text_string_to_metric_families(merged.decode())}
    assert merged.decode().count("# TYPE jobs_total counter") == 1
    jobs = {(s.labels["worker_pid"], s.value) for s in families["jobs"].samples if s.name == "jobs_total"}
    assert jobs == {("101", 3.0), ("102", 5.0)}
    assert len(families["wait_seconds"].samples) == 8
