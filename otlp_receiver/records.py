"""What the receiver keeps of each span and log record: plain frozen dataclasses, and the sink they go to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry.trace import SpanKind, StatusCode

__all__ = ["ReceivedLog", "ReceivedSpan", "ReceiverSink"]


@dataclass(frozen=True, kw_only=True)
class _Received:
    """What a span and a log record both carry. Ids are lowercase hex."""

    trace_id: str
    span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ReceivedSpan(_Received):
    """One span as it arrived over the wire; ``parent_span_id`` is "" for a root."""

    name: str
    kind: SpanKind
    parent_span_id: str
    status_code: StatusCode
    status_message: str = ""
    start_ns: int = 0
    end_ns: int = 0


@dataclass(frozen=True, kw_only=True)
class ReceivedLog(_Received):
    """One log record as it arrived over the wire; its ids are "" when it has none."""

    body: Any
    severity_text: str
    severity_number: int
    scope: str
    time_ns: int = 0


class ReceiverSink(Protocol):
    """Where a receiver with a sink puts what arrives; called from the HTTP handler threads."""

    def add_spans(self, spans: list[ReceivedSpan]) -> None:
        """Keep ``spans`` durably; raise to have the request answered 503 (the exporter retries)."""

    def add_logs(self, records: list[ReceivedLog]) -> None:
        """Keep ``records`` durably; raise to have the request answered 503 (the exporter retries)."""
