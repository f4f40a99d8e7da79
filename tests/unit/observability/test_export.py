"""The span export's setup from ``OTEL_*``, its behaviour with the OTLP endpoint down, its books and metrics.

The export runs in an export process (``observability/sdk/span_pipe.py``; its own tests are in
``test_span_pipe.py``): these tests start real ones against refused, silent and working endpoints.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter, SpanExportResult
from prometheus_client.parser import text_string_to_metric_families

from observability.sdk import tracing_setup
from observability.sdk.export_health import ExportFailure, ExportHealth
from observability.sdk.export_metrics import observe_span_export
from observability.sdk.inline_span_export import CountedBatchSpanProcessor
from observability.sdk.metrics_setup import observe_configured_span_export
from observability.sdk.prometheus import prometheus_meter_provider
from observability.sdk.span_pipe import PipeSpanProcessor
from observability.sdk.tracing_setup import make_exporter, span_processor_from_env
from otlp_receiver import OtlpReceiver
from tests.environment.polling import wait_until
from tests.environment.ports import bound_port, listening_port
from tests.spans import end_spans

pytestmark = pytest.mark.timeout(120)

CONNECTION_ERROR = "requests.exceptions.ConnectionError"
SDK_EXPORTER_LINES = ("Transient error", "Failed to export", "retrying in", "Exporter already shutdown")


class CountingExporter(SpanExporter):
    """Counts what it is given."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def test_exporter_is_chosen_by_the_standard_variables() -> None:
    """OTEL_TRACES_EXPORTER and OTEL_EXPORTER_OTLP_PROTOCOL pick the SDK's exporter; no invented names."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    assert make_exporter({"OTEL_TRACES_EXPORTER": "none"}) is None
    assert isinstance(make_exporter({"OTEL_TRACES_EXPORTER": "console"}), ConsoleSpanExporter)
    assert type(make_exporter({})) is Http
    assert type(make_exporter({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})) is Grpc
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER='zipkin' is not supported"):
        make_exporter({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_otlp_spans_go_to_an_export_process_unless_inline_is_asked_for() -> None:
    """OTLP: the export process; SPAN_EXPORT=inline, console or a given exporter: the SDK's batch processor."""
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_BSP_MAX_QUEUE_SIZE": "1000", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "100"}
    process = span_processor_from_env(env)
    assert isinstance(process, PipeSpanProcessor)
    assert (process.max_queue_size, process.exporter_type) == (1000, "otlp_http_span_exporter")
    inline = span_processor_from_env(env, span_export="inline")
    assert isinstance(inline, CountedBatchSpanProcessor) and inline.exporter_type == "otlp_http_span_exporter"
    console = span_processor_from_env({"OTEL_TRACES_EXPORTER": "console"})
    assert isinstance(console, CountedBatchSpanProcessor) and console.exporter_type is None
    given = span_processor_from_env(env, exporter=CountingExporter())
    assert isinstance(given, CountedBatchSpanProcessor)
    assert span_processor_from_env({"OTEL_TRACES_EXPORTER": "none"}) is None
    with pytest.raises(ValueError, match="span export 'thread' is not supported"):
        span_processor_from_env(env, span_export="thread")
    for processor in (process, inline, console, given):
        processor.shutdown()


def test_the_inline_processor_keeps_the_same_books() -> None:
    """SPAN_EXPORT=inline: exported spans are counted as the export process's are."""
    exporter = CountingExporter()
    processor = CountedBatchSpanProcessor(exporter, {})
    provider = TracerProvider()
    provider.add_span_processor(processor)
    end_spans(provider, 2_000)
    provider.shutdown()
    counts = processor.counts()
    assert (exporter.count, counts.submitted, counts.exported, counts.failed, counts.queued) == (2_000,) * 3 + (0, 0)


# -- the OTLP endpoint down (issue 7, fault 4) ----------------------------------------------------------------
# "Closed": a socket bound to a port but not listening, so a connection is refused (and nobody else can take the
# port). "Blackhole": a socket listening and never accepting, so a connection is made and a request is never
# answered. The SDK exporter in the export process retries a refused connection until its timeout
# (OTEL_EXPORTER_OTLP_TRACES_TIMEOUT). REFUSED_TIMEOUT allows exactly one retry (its first backoff is 0.8-1.2 s): the
# retry's warning names the cause, which becomes the batch's error.type. The default here, 0.5 s, fails a batch at
# once, without a cause ("_OTHER"), for the tests that count batches rather than causes.
REFUSED_TIMEOUT = 1.25


@pytest.fixture
def closed_port() -> Iterator[int]:
    with bound_port() as port:
        yield port


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    with listening_port(1024) as port:
        yield port


def otlp_pipeline(port: int, *, timeout: float = 0.5, **options: Any) -> tuple[TracerProvider, PipeSpanProcessor]:
    """A provider exporting through an export process over OTLP/HTTP to 127.0.0.1:``port``."""
    environ = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{port}/v1/traces",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": str(timeout),
    }
    processor = PipeSpanProcessor(environ=environ, **options)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    return provider, processor


def export_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "observability.export" and r.levelno >= logging.WARNING]


def sdk_lines(text: str) -> list[str]:
    """The SDK exporter's own log lines in the export process's output (it must not write any).

    Our interval warning quotes the SDK's reason ("last error: Failed to export ..."); when an earlier test
    configured logging to stdout it lands in the same output, and it is ours, not the SDK's.
    """
    return [
        line
        for line in text.splitlines()
        if any(part in line for part in SDK_EXPORTER_LINES) and "span export failing" not in line
    ]


def test_a_refused_endpoint_costs_one_batch_per_backoff_and_every_span_is_counted(
    closed_port: int, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Connection refused: a failed batch, then spans are dropped without a send; counts add up exactly."""
    caplog.set_level(logging.DEBUG)
    provider, processor = otlp_pipeline(
        closed_port,
        timeout=REFUSED_TIMEOUT,
        max_export_batch_size=100,
        schedule_delay_millis=600_000,  # only a full batch wakes the sender
        backoff_millis=60_000,
        max_backoff_millis=60_000,
    )
    end_spans(provider, 3_000)
    assert wait_until(lambda: processor.counts().failed > 0)
    end_spans(provider, 2_000)
    assert processor.force_flush(timeout_millis=10_000) is False  # sent once, despite the backoff; refused
    provider.shutdown()

    counts = processor.counts()
    assert counts.exported == 0 and counts.queued == 0
    assert counts.failed + counts.dropped == 5_000
    assert counts.failed % 100 == 0 and 200 <= counts.failed <= 400  # a batch or two in flight, the held one
    assert counts.failed_by == {CONNECTION_ERROR: counts.failed}
    assert counts.dropped_by == {"export_failing": counts.dropped}
    [warning] = export_warnings(caplog)
    assert re.fullmatch(
        r"span export failing: \d+ spans lost so far \(last error: requests\.exceptions\.ConnectionError: "
        r"HTTPConnectionPool\(host='127\.0\.0\.1', port=\d+\): .*Connection refused.*\)",
        warning,
    ), warning
    output = capfd.readouterr()
    assert sdk_lines(output.out + output.err) == []


def test_force_flush_gives_a_blackhole_only_its_timeout(blackhole_port: int) -> None:
    """A collector that accepts and never answers holds force_flush for its timeout, not the exporter's 60 s."""
    provider, processor = otlp_pipeline(blackhole_port, timeout=60, schedule_delay_millis=600_000)
    end_spans(provider, 100)  # fewer than a batch: only the flush sends them

    started = time.monotonic()
    assert processor.force_flush(timeout_millis=2_000) is False
    assert time.monotonic() - started < 5
    processor.shutdown(timeout_millis=500)

    counts = processor.counts()
    assert (counts.exported, counts.dropped, counts.queued) == (0, 0, 0)
    assert counts.failed_by == {"shutdown_timeout": 100}


@pytest.mark.timeout(90)
def test_thousands_of_failing_spans_make_one_warning_per_interval(
    closed_port: int, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
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
    ended, deadline = 0, time.monotonic() + 60
    while processor.counts().failed < 20 * 50 and time.monotonic() < deadline:  # at least 20 failed batches
        end_spans(provider, 100)
        ended += 100
        time.sleep(0.002)
    provider.shutdown()

    counts = processor.counts()
    assert counts.failed >= 20 * 50 and counts.dropped > counts.failed
    assert counts.exported + counts.failed + counts.dropped == ended
    assert export_warnings(caplog) == [export_warnings(caplog)[0]]
    assert re.match(r"span export failing: \d+ spans lost so far \(last error: ", export_warnings(caplog)[0])
    output = capfd.readouterr()
    assert sdk_lines(output.out + output.err) == []


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
    """Refused, then a receiver on the same port: export resumes, every later span arrives, counts add up."""
    port = int(closed_port_socket.getsockname()[1])
    provider, processor = otlp_pipeline(
        port, max_export_batch_size=100, schedule_delay_millis=10, backoff_millis=50, max_backoff_millis=200
    )
    with capture_export_log() as lines:
        end_spans(provider, 1_000, "while down")
        assert wait_until(lambda: processor.counts().failed > 0)
        closed_port_socket.close()
        with OtlpReceiver(port=port) as receiver:
            # The batch held after the failures may have failed again before the receiver came up: spans that
            # keep coming are tried after each backoff, and the first success ends it.
            probes, deadline = 0, time.monotonic() + 30
            while processor.counts().exported == 0 and time.monotonic() < deadline:
                end_spans(provider, 10, "probe")
                probes += 10
                time.sleep(0.02)
            end_spans(provider, 300, "after")
            provider.force_flush()
            assert receiver.wait_for(lambda spans: sum(s.name == "after" for s in spans) == 300, timeout=30)
            provider.shutdown()
            received = receiver.spans

    counts = processor.counts()
    assert len(received) == counts.exported
    # The batch held in the queue, and the one the export process was still retrying when the receiver came up.
    assert sum(s.name == "while down" for s in received) <= 200
    assert counts.exported + counts.failed + counts.dropped == 1_000 + probes + 300
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
    """``LEVEL message`` of each record of the ``observability.export`` logger (INFO and up)."""
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


def refused_processor(port: int) -> PipeSpanProcessor:
    """A processor that met a refused endpoint: 1,000 spans lost, failed in batches of 100 or dropped.

    The first full batch wakes the sender: refused, so the queue is cut to one batch and the rest dropped; the
    flush tries that batch once more.
    """
    provider, processor = otlp_pipeline(
        port,
        timeout=REFUSED_TIMEOUT,
        max_export_batch_size=100,
        schedule_delay_millis=600_000,
        backoff_millis=60_000,
        max_backoff_millis=60_000,
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
    assert counts.failed + counts.dropped == 1_000 and counts.failed >= 200
    values = {key: value for key, (_, value, _) in points.items()}
    assert values == {
        ("otel.sdk.processor.span.processed", None): counts.failed,  # handed to the export process
        ("otel.sdk.processor.span.processed", "export_failing"): counts.dropped,
        ("otel.sdk.exporter.span.exported", None): 0,
        ("otel.sdk.exporter.span.exported", CONNECTION_ERROR): counts.failed,
        ("otel.sdk.processor.span.queue.size", None): 0,
        ("otel.sdk.processor.span.queue.capacity", None): 65_536,
    }
    assert {unit for unit, _, _ in points.values()} == {"{span}"}
    processed = points[("otel.sdk.processor.span.processed", "export_failing")][2]
    exported = points[("otel.sdk.exporter.span.exported", CONNECTION_ERROR)][2]
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
    counts = processor.counts()
    assert samples == {
        ("otel_sdk_processor_span_processed_total", ""): counts.failed,
        ("otel_sdk_processor_span_processed_total", "export_failing"): counts.dropped,
        ("otel_sdk_exporter_span_exported_total", ""): 0,
        ("otel_sdk_exporter_span_exported_total", CONNECTION_ERROR): counts.failed,
        ("otel_sdk_processor_span_queue_size", ""): 0,
        ("otel_sdk_processor_span_queue_capacity", ""): 65_536,
    }


def test_configure_metrics_observes_the_span_processor_configure_tracing_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever wires the meter provider gets the export metrics of this process's processor; none without one."""
    processor = CountedBatchSpanProcessor(CountingExporter(), {})
    reader = InMemoryMetricReader()
    monkeypatch.setitem(tracing_setup._span_processors, os.getpid(), processor)
    assert observe_configured_span_export(MeterProvider(metric_readers=[reader])) is True
    names = {m.name for r in reader.get_metrics_data().resource_metrics for s in r.scope_metrics for m in s.metrics}
    assert "otel.sdk.processor.span.processed" in names
    processor.shutdown()
    monkeypatch.delitem(tracing_setup._span_processors, os.getpid())
    assert observe_configured_span_export(MeterProvider(metric_readers=[InMemoryMetricReader()])) is False
