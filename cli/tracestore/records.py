"""What the store keeps of a log record, and the conversions from what the OTLP receiver decodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import StatusCode

from cli.spanfile import SpanView
from otlp_receiver import ReceivedLog, ReceivedSpan

__all__ = ["LogView", "log_view", "span_view"]


@dataclass(frozen=True)
class LogView:
    """One log record as ``trace show`` prints it under its trace."""

    trace_id: str
    span_id: str
    time_ns: int
    severity: str
    body: str
    service: str
    attributes: dict[str, Any] = field(default_factory=dict)


def span_view(span: ReceivedSpan) -> SpanView:
    """A received span as the view the waterfall and the flow rules read."""
    return SpanView(
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_id=span.parent_span_id or None,
        name=span.name,
        service=str(span.resource.get("service.name", "")),
        start_ns=span.start_ns,
        end_ns=span.end_ns,
        error=(span.status_message or "error") if span.status_code is StatusCode.ERROR else None,
        attributes=dict(span.attributes),
    )


def log_view(record: ReceivedLog) -> LogView:
    """A received log record; a structured body is kept as its text."""
    return LogView(
        trace_id=record.trace_id,
        span_id=record.span_id,
        time_ns=record.time_ns,
        severity=(record.severity_text or str(record.severity_number)).lower(),
        body=record.body if isinstance(record.body, str) else repr(record.body),
        service=str(record.resource.get("service.name", "")),
        attributes=dict(record.attributes),
    )
