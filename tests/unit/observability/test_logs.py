"""Log lines written while a message is processed carry its trace and message fields, and nothing leaks."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from observability.sdk import configure_logging
from tests.conftest import drain, make_stub_broker
from tests.spans import named, one, span_id, trace_id

log = structlog.get_logger("tests.actor")
tracer = trace.get_tracer("tests")


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Route all logging, structlog and stdlib, as JSON lines into a buffer; restore everything after."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging(json=True, stream=stream, level="DEBUG")
    yield stream
    structlog.reset_defaults()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_actor_log_lines_carry_the_ids_of_the_span_they_were_written_in(
    log_stream: io.StringIO, span_exporter: InMemorySpanExporter
) -> None:
    """A structlog line inside the actor has the process span's trace id, its own span id and message fields."""
    broker = make_stub_broker()

    @dramatiq.actor(actor_name="chatty", queue_name="work", broker=broker)
    def chatty() -> None:
        log.info("in_actor")
        with tracer.start_as_current_span("inner"):
            log.info("in_inner")

    message = chatty.send()
    drain(broker)

    spans = span_exporter.get_finished_spans()
    process, inner = one(spans, "process work"), one(spans, "inner")
    by_event = {line["event"]: line for line in lines(log_stream)}
    expected = {"message_id": message.message_id, "actor": "chatty", "queue": "work", "retries": 0}
    assert (
        by_event["in_actor"].items()
        >= {
            **expected,
            "trace_id": format(trace_id(process), "032x"),
            "span_id": format(span_id(process), "016x"),
        }.items()
    )
    assert by_event["in_inner"]["span_id"] == format(span_id(inner), "016x")
    assert by_event["in_inner"]["trace_id"] == by_event["in_actor"]["trace_id"]


def test_dramatiq_failure_line_is_correlated(log_stream: io.StringIO, span_exporter: InMemorySpanExporter) -> None:
    """Dramatiq's own stdlib "Failed to process message" line carries the trace id and message fields."""
    broker = make_stub_broker()

    @dramatiq.actor(actor_name="crashes", queue_name="work", broker=broker, max_retries=0)
    def crashes() -> None:
        secret = "ada@example.com"
        raise RuntimeError(f"kaput for {secret}")  # a traceback shows this line: the text is in a variable

    message = crashes.send()
    drain(broker, fail_fast=False)

    process = one(span_exporter.get_finished_spans(), "process work")
    failed = [line for line in lines(log_stream) if line["event"].startswith("Failed to process message")]
    assert len(failed) == 1
    assert failed[0]["trace_id"] == format(trace_id(process), "032x")
    assert failed[0]["message_id"] == message.message_id
    assert failed[0]["level"] == "error"
    assert "RuntimeError: [hidden: may hold personal data]" in failed[0]["exception"]
    assert "ada@example.com" not in json.dumps(lines(log_stream))  # an exception's text may quote personal data
    dead = [line for line in lines(log_stream) if line["event"] == "message_dead_lettered"]
    assert len(dead) == 1
    assert dead[0]["reason"] == "retries_exhausted"
    assert dead[0]["trace_id"] == format(trace_id(process), "032x")
    assert dead[0]["dead_letter_queue"] == "work.XQ"


def test_no_field_leaks_to_the_next_message(log_stream: io.StringIO, span_exporter: InMemorySpanExporter) -> None:
    """The second message's lines name the second message, and a line after processing names none."""
    broker = make_stub_broker()

    @dramatiq.actor(actor_name="speaks", queue_name="work", broker=broker)
    def speaks(n: int) -> None:
        log.info("spoke", n=n)

    first = speaks.send(1)
    second = speaks.send(2)
    drain(broker)
    log.info("outside")

    spoke = {line["n"]: line for line in lines(log_stream) if line["event"] == "spoke"}
    assert spoke[1]["message_id"] == first.message_id
    assert spoke[2]["message_id"] == second.message_id
    assert spoke[1]["trace_id"] != spoke[2]["trace_id"]
    outside = next(line for line in lines(log_stream) if line["event"] == "outside")
    assert not {"message_id", "actor", "trace_id", "span_id"} & outside.keys()
    assert len(named(span_exporter.get_finished_spans(), "process work")) == 2


def test_console_renderer_when_asked(span_exporter: InMemorySpanExporter) -> None:
    """``json=False`` renders readable console lines instead of JSON."""
    root = logging.getLogger()
    saved = list(root.handlers)
    stream = io.StringIO()
    try:
        configure_logging(json=False, stream=stream)
        log.info("hello_console", answer=42)
    finally:
        structlog.reset_defaults()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
    output = stream.getvalue()
    assert "hello_console" in output and "answer=42" in output
    with pytest.raises(json.JSONDecodeError):
        json.loads(output.splitlines()[0])
