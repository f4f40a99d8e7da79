"""The burst-proof span processor and the SDK setup from ``OTEL_*`` variables."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter, SpanExportResult

from observability.export import FastOTLPSpanExporter, QueuedSpanProcessor
from observability.tracing import make_exporter


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
