"""Spans on disk as OTLP/JSON lines (the collector's file-exporter format), and read back for drawing.

Each line is one ``ExportTraceServiceRequest`` in the OTLP/JSON mapping: ids as hex strings, not the
base64 that protobuf's generic JSON mapping would give, so the file opens in any OTLP tool.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["SpanView", "from_readable", "read_spans", "write_spans"]

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


@dataclass(frozen=True)
class SpanView:
    """What the waterfall needs of a span, whatever it was read from."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    start_ns: int
    end_ns: int
    error: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


def from_readable(span: ReadableSpan) -> SpanView:
    """An SDK span as a view."""
    assert span.context is not None
    failed = span.status.status_code.name == "ERROR"
    return SpanView(
        trace_id=f"{span.context.trace_id:032x}",
        span_id=f"{span.context.span_id:016x}",
        parent_id=f"{span.parent.span_id:016x}" if span.parent is not None else None,
        name=span.name,
        service=str(span.resource.attributes.get("service.name", "")),
        start_ns=span.start_time or 0,
        end_ns=span.end_time or 0,
        error=(span.status.description or "error") if failed else None,
        attributes=dict(span.attributes or {}),
    )


def write_spans(path: Path, spans: Sequence[ReadableSpan]) -> None:
    """Append ``spans`` to ``path`` as one OTLP/JSON line."""
    if not spans:
        return
    document = MessageToDict(encode_spans(spans))
    _hex_ids(document)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(document, separators=(",", ":")) + "\n")


def read_spans(path: Path, offset: int = 0) -> list[SpanView]:
    """Every span in an OTLP/JSON lines file, or in its lines from byte ``offset`` on."""
    views: list[SpanView] = []
    with path.open("rb") as source:
        source.seek(offset)
        text = source.read().decode("utf-8")
    for line in text.splitlines():
        if line.strip():
            views.extend(_views(json.loads(line)))
    return views


def _views(document: dict[str, Any]) -> Iterator[SpanView]:
    for resource_spans in document.get("resourceSpans", []):
        resource = {
            a["key"]: _value(a.get("value", {})) for a in resource_spans.get("resource", {}).get("attributes", [])
        }
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                status = span.get("status", {})
                yield SpanView(
                    trace_id=span["traceId"],
                    span_id=span["spanId"],
                    parent_id=span.get("parentSpanId") or None,
                    name=span.get("name", ""),
                    service=str(resource.get("service.name", "")),
                    start_ns=int(span.get("startTimeUnixNano", 0)),
                    end_ns=int(span.get("endTimeUnixNano", 0)),
                    error=(status.get("message") or "error") if status.get("code") == "STATUS_CODE_ERROR" else None,
                    attributes={a["key"]: _value(a.get("value", {})) for a in span.get("attributes", [])},
                )


def _value(value: dict[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])
    return None


def _hex_ids(node: Any) -> None:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping writes bytes as base64."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)
