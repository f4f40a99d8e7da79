"""The burst-proof span processor, its behaviour with the OTLP endpoint down, and the SDK setup from ``OTEL_*``."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter, SpanExportResult
from prometheus_client.parser import text_string_to_metric_families

from observability.sdk import tracing
from observability.sdk.export_health import ExportFailure, ExportHealth
from observability.sdk.export_metrics import observe_span_export
from observability.sdk.prometheus import prometheus_meter_provider
from observability.sdk.span_queue import FastOTLPSpanExporter, QueuedSpanProcessor
from observability.sdk.tracing import make_exporter, observe_configured_span_export
from tests.otlp_receiver import OtlpReceiver


class CountingExporter(SpanExporter):
    """Counts what it is given; optionally blocks until released, to fill the queue."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.count = 0
        self.gate = gate

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.gate is not None:
            self.gate.wait(10)
        self.count += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def test_a_burst_of_20000_spans_loses_none() -> None:
    """20,000 spans ended in a tight loop all reach the exporter (the SDK default queue holds 2,048)."""
    exporter = CountingExporter()
    processor = QueuedSpanProcessor(exporter)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("burst")
    for _ in range(20_000):
        tracer.start_span("s").end()
    provider.shutdown()
    assert (exporter.count, processor.dropped, processor.exported) == (20_000, 0, 20_000)


def test_a_full_queue_counts_every_dropped_span() -> None:
    """Past max_queue_size, spans are dropped and counted, never silently."""
    gate = threading.Event()
    exporter = CountingExporter(gate)
    processor = QueuedSpanProcessor(exporter, max_queue_size=10, max_export_batch_size=10, schedule_delay_millis=10)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("full")
    tracer.start_span("first").end()
    while processor._queue:  # the export thread took the first span and is now blocked in export
        pass
    for _ in range(25):
        tracer.start_span("s").end()
    gate.set()
    provider.shutdown()
    assert processor.dropped == 15
    assert exporter.count == 11


def test_force_flush_exports_without_waiting_for_the_schedule() -> None:
    """force_flush (called on worker shutdown) exports what is queued at once."""
    exporter = CountingExporter()
    processor = QueuedSpanProcessor(exporter, schedule_delay_millis=60_000)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.get_tracer("flush").start_span("s").end()
    assert processor.force_flush()
    assert exporter.count == 1
    provider.shutdown()


def test_a_forked_child_exports_its_own_spans() -> None:
    """After fork the child re-creates the export thread (the parent's does not exist there)."""
    read_end, write_end = os.pipe()
    exporter = CountingExporter()
    processor = QueuedSpanProcessor(exporter, schedule_delay_millis=20)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    pid = os.fork()
    if pid == 0:  # child
        provider.get_tracer("child").start_span("s").end()
        deadline = 200
        while exporter.count == 0 and deadline:
            threading.Event().wait(0.02)
            deadline -= 1
        os.write(write_end, str(exporter.count).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read_end, 16) == b"1"
    provider.shutdown()


def test_exporter_is_chosen_by_the_standard_variables() -> None:
    """OTEL_TRACES_EXPORTER and OTEL_EXPORTER_OTLP_PROTOCOL pick the exporter; no invented names."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    assert make_exporter({"OTEL_TRACES_EXPORTER": "none"}) is None
    assert isinstance(make_exporter({"OTEL_TRACES_EXPORTER": "console"}), ConsoleSpanExporter)
    assert isinstance(make_exporter({}), FastOTLPSpanExporter)
    assert isinstance(make_exporter({}), Http)
    assert isinstance(make_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}), Grpc)


# -- the OTLP endpoint down (issue 7, fault 4) ----------------------------------------------------------------
# "Closed": a socket bound to a port but not listening, so a connection is refused (and nobody else can take the
# port). "Blackhole": a socket listening and never accepting, so a connection is made and a request is never
# answered. Bounds on time are the pytest timeouts: a call that honours its deadline returns long before them.

SDK_EXPORTER_LOGGERS = ("opentelemetry.exporter", "urllib3", "requests")


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        yield int(sock.getsockname()[1])


class CountingOTLPExporter(FastOTLPSpanExporter):
    """Our OTLP/HTTP exporter, counting export attempts."""

    calls = 0

    def export_within(self, spans: Sequence[ReadableSpan], timeout: float | None) -> SpanExportResult:
        self.calls += 1
        return super().export_within(spans, timeout)


def otlp_pipeline(port: int, *, timeout: float = 30.0, **options: Any) -> tuple[TracerProvider, QueuedSpanProcessor]:
    """A provider exporting through our processor and OTLP/HTTP exporter to 127.0.0.1:``port``."""
    exporter = CountingOTLPExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=timeout)
    processor = QueuedSpanProcessor(exporter, **options)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    return provider, processor


def end_spans(provider: TracerProvider, count: int, name: str = "s") -> None:
    tracer = provider.get_tracer("otlp-down")
    for _ in range(count):
        tracer.start_span(name).end()


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def export_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "observability.export" and r.levelno >= logging.WARNING]


def sdk_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    """INFO and up from the SDK exporter and its HTTP client (urllib3 logs each connection at DEBUG)."""
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.name.startswith(SDK_EXPORTER_LOGGERS) and r.levelno >= logging.INFO
    ]


@pytest.mark.timeout(60)
def test_a_refused_endpoint_costs_one_attempt_per_backoff_and_every_span_is_counted(
    closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Connection refused: one failed batch, then spans are dropped without an attempt; counts add up exactly."""
    caplog.set_level(logging.DEBUG)
    provider, processor = otlp_pipeline(
        closed_port,
        max_export_batch_size=100,
        schedule_delay_millis=600_000,  # only a full batch wakes the export thread
        backoff_millis=60_000,
        max_backoff_millis=60_000,
    )
    exporter = processor.exporter
    assert isinstance(exporter, CountingOTLPExporter)
    end_spans(provider, 3_000)
    assert wait_until(lambda: processor.failed > 0)
    end_spans(provider, 2_000)
    assert processor.force_flush(timeout_millis=5_000) is False  # tried once, despite the backoff; refused
    provider.shutdown()  # nothing left to try: the flush took the one batch held

    counts = processor.counts()
    # The export thread's attempt with the first full batch, then the flush's with the batch held since.
    assert exporter.calls == 2
    assert (counts.submitted, counts.exported, counts.failed, counts.dropped, counts.queued) == (200, 0, 200, 4_800, 0)
    assert counts.failed_by == {"requests.exceptions.ConnectionError": 200}
    assert counts.dropped_by == {"export_failing": 4_800}
    [warning] = export_warnings(caplog)
    assert re.fullmatch(
        r"span export failing: \d+ spans lost so far \(last error: requests\.exceptions\.ConnectionError: "
        r"HTTPConnectionPool\(host='127\.0\.0\.1', port=\d+\): .*Connection refused.*\)",
        warning,
    ), warning
    assert sdk_records(caplog) == []  # one attempt per export: no SDK retry lines


@pytest.mark.timeout(30)
def test_force_flush_gives_a_blackhole_only_what_is_left_of_its_timeout(
    blackhole_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A collector that accepts and never answers holds force_flush for its timeout, not the exporter's 60 s."""
    provider, processor = otlp_pipeline(blackhole_port, timeout=60, schedule_delay_millis=600_000)
    end_spans(provider, 100)  # fewer than a batch: the export thread stays asleep, the flush exports

    assert processor.force_flush(timeout_millis=300) is False
    provider.shutdown()

    counts = processor.counts()
    assert (counts.exported, counts.failed, counts.dropped, counts.queued) == (0, 100, 0, 0)
    assert counts.failed_by == {"requests.exceptions.ReadTimeout": 100}
    assert sdk_records(caplog) == []


@pytest.mark.timeout(30)
def test_shutdown_behind_an_export_stuck_on_a_blackhole_keeps_its_deadline(blackhole_port: int) -> None:
    """With the export thread stuck for 60 s, shutdown returns at its deadline and counts what it left behind."""
    provider, processor = otlp_pipeline(
        blackhole_port, timeout=60, max_export_batch_size=512, schedule_delay_millis=600_000
    )
    end_spans(provider, 512)  # a full batch wakes the export thread, which blocks on the blackhole
    assert wait_until(lambda: processor.counts().submitted == 512)
    end_spans(provider, 10_000)  # queued behind it (the queue holds 65,536)

    assert processor.force_flush(timeout_millis=200) is False  # the export lock is held: waits 0.2 s at most
    processor.shutdown(timeout_millis=300)

    counts = processor.counts()
    assert counts.dropped_by == {"shutdown_timeout": 10_000}
    assert (counts.exported, counts.failed, counts.queued) == (0, 0, 0)
    assert counts.submitted == 512  # still in flight on the stuck thread: neither exported nor failed yet
    end_spans(provider, 3)
    assert processor.counts().dropped_by == {"shutdown_timeout": 10_000, "already_shutdown": 3}


@pytest.mark.timeout(60)
def test_thousands_of_failing_spans_make_one_warning_per_interval(
    closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Dozens of failed batches and thousands of dropped spans inside one interval: one warning line."""
    caplog.set_level(logging.DEBUG)
    provider, processor = otlp_pipeline(
        closed_port,
        max_export_batch_size=50,
        schedule_delay_millis=1,
        backoff_millis=1,
        max_backoff_millis=1,
        drop_log_interval=3_600,
    )
    for _ in range(100):
        end_spans(provider, 100)
        time.sleep(0.002)
    assert wait_until(lambda: processor.failed >= 20 * 50)  # at least 20 failed batches
    provider.shutdown()

    counts = processor.counts()
    assert counts.exported + counts.failed + counts.dropped == 10_000
    assert export_warnings(caplog) == [export_warnings(caplog)[0]]
    assert re.match(r"span export failing: \d+ spans lost so far \(last error: ", export_warnings(caplog)[0])
    assert sdk_records(caplog) == []


def test_a_warning_per_interval_with_the_running_total() -> None:
    """The first loss is logged at once, then nothing until the interval has passed; the count is cumulative."""
    now = [100.0]
    health = ExportHealth(log_interval=10.0, backoff=1.0, max_backoff=10.0, clock=lambda: now[0])
    failure = ExportFailure("requests.exceptions.ConnectionError", "ConnectionError: refused")
    with capture_export_log() as lines:
        health.failed_export(50, failure)
        health.report()
        for _ in range(1_000):
            health.drop(1, "export_failing")
            health.report()
        now[0] += 9.9
        health.drop(1, "export_failing")
        health.report()
        now[0] += 0.1
        health.report()
        now[0] += 60
        health.report()  # nothing lost since the last line: nothing to say
        health.succeeded(50)
        health.drop(1, "queue_full")
        health.report()
    assert lines == [
        "WARNING span export failing: 50 spans lost so far (last error: ConnectionError: refused)",
        "WARNING span export failing: 1051 spans lost so far (last error: ConnectionError: refused)",
        "INFO span export recovered: 1051 spans lost so far",
        "WARNING span queue full: 1 spans dropped so far",
    ]
    assert health.retry_at == 0.0 and not health.failing


def test_backoff_doubles_up_to_its_maximum_and_ends_with_a_success() -> None:
    """No export is due before retry_at: 1, 2, 4, 4 s after successive failures; a success clears it."""
    now = [0.0]
    health = ExportHealth(log_interval=10.0, backoff=1.0, max_backoff=4.0, clock=lambda: now[0])
    failure = ExportFailure("503", "HTTP 503 Service Unavailable")
    due = []
    for _ in range(4):
        health.failed_export(1, failure)
        due.append(health.retry_at - now[0])
    assert due == [1.0, 2.0, 4.0, 4.0]
    health.succeeded(1)
    assert (health.failing, health.retry_at) == (False, 0.0)
    health.failed_export(1, failure)
    assert health.retry_at == 1.0


@pytest.mark.timeout(60)
def test_export_resumes_when_the_endpoint_comes_back(closed_port_socket: socket.socket) -> None:
    """Refused, then a receiver on the same port: the held batch and every later span arrive, counts add up."""
    port = int(closed_port_socket.getsockname()[1])
    provider, processor = otlp_pipeline(
        port, max_export_batch_size=100, schedule_delay_millis=10, backoff_millis=50, max_backoff_millis=200
    )
    with capture_export_log() as lines:
        end_spans(provider, 1_000, "while down")
        assert wait_until(lambda: processor.failed > 0)
        closed_port_socket.close()
        with OtlpReceiver(port=port) as receiver:
            assert wait_until(lambda: processor.exported > 0)  # the next attempt after the backoff succeeds
            end_spans(provider, 300, "after")
            provider.force_flush()
            assert receiver.wait_for(lambda spans: sum(s.name == "after" for s in spans) == 300, timeout=30)
            provider.shutdown()
            received = receiver.spans

    counts = processor.counts()
    assert len(received) == counts.exported
    assert counts.exported - 300 == sum(s.name == "while down" for s in received) <= 100  # the held batch
    assert counts.exported + counts.failed + counts.dropped == 1_300
    assert re.match(r"WARNING span export failing: \d+ spans lost so far \(last error: ", lines[0])
    assert lines[1:] == [f"INFO span export recovered: {counts.failed + counts.dropped} spans lost so far"]


@pytest.fixture
def closed_port_socket() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


@contextlib.contextmanager
def capture_export_log() -> Iterator[list[str]]:
    """``LEVEL message`` of each record of the ``observability.sdk.span_queue`` logger (INFO and up)."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(f"{record.levelname} {record.getMessage()}")

    logger = logging.getLogger("observability.export")
    handler, level = Collect(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# -- the loss as metrics --------------------------------------------------------------------------------------


def refused_processor(port: int) -> QueuedSpanProcessor:
    """A processor that met a refused endpoint: 200 spans failed (two batches), 800 dropped, 0 exported.

    The first full batch wakes the export thread: refused, so the queue is cut to one batch and the rest
    dropped; the flush (or the shutdown, if the thread came second) tries that batch once more.
    """
    provider, processor = otlp_pipeline(
        port, max_export_batch_size=100, schedule_delay_millis=600_000, backoff_millis=60_000, max_backoff_millis=60_000
    )
    end_spans(provider, 1_000)
    assert processor.force_flush() is False
    provider.shutdown()
    return processor


def test_lost_spans_are_metrics_under_the_sdk_semantic_convention_names(closed_port: int) -> None:
    """otel.sdk.processor.span.processed / otel.sdk.exporter.span.exported equal the processor's own counts."""
    processor = refused_processor(closed_port)
    reader = InMemoryMetricReader()
    observe_span_export(MeterProvider(metric_readers=[reader]), processor)

    points = {
        (metric.name, point.attributes.get("error.type")): (metric.unit, point.value, dict(point.attributes))
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    }
    counts = processor.counts()
    assert (counts.failed, counts.dropped) == (200, 800)
    values = {key: value for key, (_, value, _) in points.items()}
    assert values == {
        ("otel.sdk.processor.span.processed", None): 200,  # handed to the exporter
        ("otel.sdk.processor.span.processed", "export_failing"): 800,
        ("otel.sdk.exporter.span.exported", None): 0,
        ("otel.sdk.exporter.span.exported", "requests.exceptions.ConnectionError"): 200,
        ("otel.sdk.processor.span.queue.size", None): 0,
        ("otel.sdk.processor.span.queue.capacity", None): 65_536,
    }
    assert {unit for unit, _, _ in points.values()} == {"{span}"}
    processed = points[("otel.sdk.processor.span.processed", "export_failing")][2]
    exported = points[("otel.sdk.exporter.span.exported", "requests.exceptions.ConnectionError")][2]
    assert processed["otel.component.type"] == "batching_span_processor"
    assert str(processed["otel.component.name"]).startswith("batching_span_processor/")
    assert exported["otel.component.type"] == "otlp_http_span_exporter"
    lost = sum(value for (_, error), value in values.items() if error is not None)
    assert lost == counts.failed + counts.dropped == 1_000


def test_lost_spans_render_as_prometheus_counters(closed_port: int) -> None:
    """The Prometheus names dashboards query: *_total counters with an error_type label, queue gauges."""
    processor = refused_processor(closed_port)
    provider, render = prometheus_meter_provider()
    observe_span_export(provider, processor)

    samples = {
        (sample.name, sample.labels.get("error_type", "")): sample.value
        for family in text_string_to_metric_families(render().decode())
        if family.name.startswith("otel_sdk_")
        for sample in family.samples
    }
    assert samples == {
        ("otel_sdk_processor_span_processed_total", ""): 200,
        ("otel_sdk_processor_span_processed_total", "export_failing"): 800,
        ("otel_sdk_exporter_span_exported_total", ""): 0,
        ("otel_sdk_exporter_span_exported_total", "requests.exceptions.ConnectionError"): 200,
        ("otel_sdk_processor_span_queue_size", ""): 0,
        ("otel_sdk_processor_span_queue_capacity", ""): 65_536,
    }


def test_configure_metrics_observes_the_span_processor_configure_tracing_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever wires the meter provider gets the export metrics of this process's processor; none without one."""
    processor = QueuedSpanProcessor(CountingExporter())
    reader = InMemoryMetricReader()
    monkeypatch.setitem(tracing._span_processors, os.getpid(), processor)
    assert observe_configured_span_export(MeterProvider(metric_readers=[reader])) is True
    names = {m.name for r in reader.get_metrics_data().resource_metrics for s in r.scope_metrics for m in s.metrics}
    assert "otel.sdk.processor.span.processed" in names
    processor.shutdown()
    monkeypatch.delitem(tracing._span_processors, os.getpid())
    assert observe_configured_span_export(MeterProvider(metric_readers=[InMemoryMetricReader()])) is False
