"""Span views made by hand, the shapes the tracing middleware writes (send / process spans and their keys)."""

from __future__ import annotations

from typing import Any

from cli.spanfile import SpanView
from observability import semconv


def span(
    trace: str,
    span_id: str,
    name: str,
    *,
    parent: str | None = None,
    start: int = 0,
    end: int | None = None,
    error: str | None = None,
    service: str = "svc",
    **attributes: Any,
) -> SpanView:
    """A span of trace ``trace`` (padded to 32 hex digits); ``start``/``end`` in milliseconds."""
    return SpanView(
        trace_id=trace.ljust(32, "0"),
        span_id=span_id.ljust(16, "0"),
        parent_id=parent.ljust(16, "0") if parent else None,
        name=name,
        service=service,
        start_ns=start * 1_000_000,
        end_ns=(start + 1 if end is None else end) * 1_000_000,
        error=error,
        attributes=attributes,
    )


def send(trace: str, span_id: str, queue: str, message_id: str, **kwargs: Any) -> SpanView:
    attributes = {
        semconv.MESSAGING_OPERATION_TYPE: "send",
        semconv.MESSAGING_MESSAGE_ID: message_id,
        semconv.MESSAGING_DESTINATION_NAME: queue,
    }
    return span(trace, span_id, f"send {queue}", **attributes, **kwargs)


def process(
    trace: str,
    span_id: str,
    queue: str,
    message_id: str,
    outcome: str,
    *,
    retries: int = 0,
    actor: str = "act",
    **kw: Any,
) -> SpanView:
    attributes = {
        semconv.MESSAGING_OPERATION_TYPE: "process",
        semconv.MESSAGING_MESSAGE_ID: message_id,
        semconv.MESSAGING_DESTINATION_NAME: queue,
        semconv.OUTCOME: outcome,
        semconv.RETRIES: retries,
        semconv.ACTOR_NAME: actor,
    }
    return span(trace, span_id, f"process {queue}", **attributes, **kw)
