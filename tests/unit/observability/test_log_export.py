"""Log records leave over real OTLP/HTTP protobuf with the span's ids, structlog keys as attributes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from observability.sdk import configure_logging
from observability.sdk.log_export import make_log_exporter
from observability.sdk.log_handler import OtlpLogHandler
from otlp_receiver import OtlpReceiver

log = structlog.get_logger("tests.orders")
tracer = trace.get_tracer("tests")


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture
def exported(receiver: OtlpReceiver) -> Iterator[tuple[LoggerProvider, io.StringIO]]:
    """JSON lines into a buffer and OTLP records to the receiver; the root logger restored after."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    provider = LoggerProvider(resource=Resource({"service.name": "log-test"}), shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{receiver.endpoint}/v1/logs")))
    handler = OtlpLogHandler(logger_provider=provider)
    root.addHandler(handler)
    stream = io.StringIO()
    configure_logging(json=True, stream=stream, level="INFO")  # keeps the OTLP handler
    yield provider, stream
    provider.shutdown()
    structlog.reset_defaults()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    for existing in saved_handlers:
        root.addHandler(existing)
    root.setLevel(saved_level)


def test_structlog_event_becomes_a_record_with_attributes_and_the_span_ids(
    exported: tuple[LoggerProvider, io.StringIO], receiver: OtlpReceiver
) -> None:
    provider, stream = exported
    with tracer.start_as_current_span("place order") as span:
        log.info("order_placed", order_id=42, total=9.5, skus=["a", "b"], meta={"source": "api"}, name="clash")
    provider.force_flush()

    assert receiver.wait_for_logs(lambda logs: len(logs) == 1, timeout=5), receiver.logs
    record = receiver.logs[0]
    context = span.get_span_context()
    assert record.body == "order_placed"
    assert record.severity_text == "INFO"
    assert record.severity_number == 9
    assert record.scope == "tests.orders"
    assert record.trace_id == format(context.trace_id, "032x")
    assert record.span_id == format(context.span_id, "016x")
    assert record.resource["service.name"] == "log-test"
    assert record.attributes == {
        "order_id": 42,
        "total": 9.5,
        "skus": ["a", "b"],
        "meta": "{'source': 'api'}",
        "name_": "clash",  # a LogRecord attribute name: renamed, not clobbering the logger name
    }
    # The stdout line is still written, with the same ids.
    line = json.loads(stream.getvalue().splitlines()[0])
    assert line["event"] == "order_placed"
    assert line["trace_id"] == record.trace_id


def test_stdlib_records_and_exceptions_are_exported(
    exported: tuple[LoggerProvider, io.StringIO], receiver: OtlpReceiver
) -> None:
    provider, _ = exported
    with tracer.start_as_current_span("process orders"):
        try:
            text = "out of stock for ada@example.com"
            raise ValueError(text)
        except ValueError:
            worker_log = logging.getLogger("dramatiq.worker.WorkerThread")
            worker_log.error("Failed to process message %s", "m-1", exc_info=True)
            log.exception("reservation_failed", order_id=7)
    provider.force_flush()

    assert receiver.wait_for_logs(lambda logs: len(logs) == 2, timeout=5), receiver.logs
    stdlib, structured = receiver.logs
    assert stdlib.body == "Failed to process message m-1"
    assert stdlib.severity_text == "ERROR"
    assert stdlib.scope == "dramatiq.worker.WorkerThread"
    assert stdlib.attributes["exception.type"] == "ValueError"
    assert stdlib.attributes["exception.message"] == "[hidden: may hold personal data]"
    assert "ada@example.com" not in str(stdlib.attributes) + str(structured.attributes)
    assert structured.body == "reservation_failed"
    assert structured.attributes["order_id"] == 7
    assert structured.attributes["exception.type"] == "ValueError"
    assert "raise ValueError" in structured.attributes["exception.stacktrace"]
    assert stdlib.trace_id == structured.trace_id != ""


def test_outside_a_span_records_have_no_ids_and_the_exporters_own_loggers_are_not_exported(
    exported: tuple[LoggerProvider, io.StringIO], receiver: OtlpReceiver
) -> None:
    provider, _ = exported
    log.info("startup")
    logging.getLogger("opentelemetry.exporter.otlp").warning("export failed")  # would loop through itself
    logging.getLogger("urllib3.connectionpool").warning("retrying")
    provider.force_flush()

    assert receiver.wait_for_logs(lambda logs: len(logs) >= 1, timeout=5)
    assert [(record.body, record.trace_id) for record in receiver.logs] == [("startup", "")]


def test_exporter_choice_is_explicit() -> None:
    assert make_log_exporter({}) is None  # off unless a deployment asks
    assert make_log_exporter({"OTEL_LOGS_EXPORTER": "none"}) is None
    assert isinstance(make_log_exporter({"OTEL_LOGS_EXPORTER": "otlp"}), OTLPLogExporter)
    with pytest.raises(ValueError, match="OTEL_LOGS_EXPORTER='loki'"):
        make_log_exporter({"OTEL_LOGS_EXPORTER": "loki"})
