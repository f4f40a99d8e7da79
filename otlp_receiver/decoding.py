"""OTLP protobuf export requests decoded: the one parser of trace and log exports, and their records.

The counting process (:mod:`otlp_receiver.counting`) stops at :func:`parse_traces` and reads span names off
the protobuf, because building a :class:`ReceivedSpan` per span would cost its CPU for nothing; the in-thread
receiver goes on to :func:`decode_request` / :func:`decode_logs_request`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.trace import SpanKind, StatusCode

from otlp_receiver.records import ReceivedLog, ReceivedSpan

__all__ = [
    "decode_attributes",
    "decode_logs_request",
    "decode_request",
    "decode_value",
    "parse_traces",
]

# OTLP numbers kinds from 1 (INTERNAL) with 0 meaning unspecified, which readers treat as INTERNAL.
_KINDS = {
    ProtoSpan.SPAN_KIND_UNSPECIFIED: SpanKind.INTERNAL,
    ProtoSpan.SPAN_KIND_INTERNAL: SpanKind.INTERNAL,
    ProtoSpan.SPAN_KIND_SERVER: SpanKind.SERVER,
    ProtoSpan.SPAN_KIND_CLIENT: SpanKind.CLIENT,
    ProtoSpan.SPAN_KIND_PRODUCER: SpanKind.PRODUCER,
    ProtoSpan.SPAN_KIND_CONSUMER: SpanKind.CONSUMER,
}


def decode_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as the Python value it carries (lists for arrays, dicts for kvlists)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [decode_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return decode_attributes(value.kvlist_value.values)
    return getattr(value, which)


def decode_attributes(attributes: Iterable[KeyValue]) -> dict[str, Any]:
    """OTLP key-values as a plain dict."""
    return {kv.key: decode_value(kv.value) for kv in attributes}


def parse_traces(body: bytes) -> ExportTraceServiceRequest:
    """A serialized ``ExportTraceServiceRequest`` (uncompressed) parsed; raises on a malformed body."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return request


def decode_request(body: bytes) -> list[ReceivedSpan]:
    """Every span in a serialized ``ExportTraceServiceRequest``, each with its resource's attributes."""
    return [
        ReceivedSpan(
            name=span.name,
            kind=_KINDS.get(span.kind, SpanKind.INTERNAL),
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex(),
            attributes=decode_attributes(span.attributes),
            status_code=StatusCode(span.status.code),
            resource=resource,
            start_ns=span.start_time_unix_nano,
            end_ns=span.end_time_unix_nano,
            status_message=span.status.message,
        )
        for resource, _, span in _each(parse_traces(body).resource_spans, "scope_spans", "spans")
    ]


def decode_logs_request(body: bytes) -> list[ReceivedLog]:
    """Every log record in a serialized ``ExportLogsServiceRequest``, each with its resource's attributes."""
    request = ExportLogsServiceRequest()
    request.ParseFromString(body)
    return [
        ReceivedLog(
            body=decode_value(record.body),
            severity_text=record.severity_text,
            severity_number=int(record.severity_number),
            trace_id=record.trace_id.hex(),
            span_id=record.span_id.hex(),
            attributes=decode_attributes(record.attributes),
            scope=scope.scope.name,
            resource=resource,
            time_ns=record.time_unix_nano,
        )
        for resource, scope, record in _each(request.resource_logs, "scope_logs", "log_records")
    ]


def _each(resources: Iterable[Any], scopes: str, items: str) -> Iterator[tuple[dict[str, Any], Any, Any]]:
    """Each span or record of an export with its resource's attributes (decoded once per resource) and scope."""
    for resource_items in resources:
        resource = decode_attributes(resource_items.resource.attributes)
        for scope in getattr(resource_items, scopes):
            for item in getattr(scope, items):
                yield resource, scope, item
