"""Finished spans as plain tuples, so they can cross a pipe to the export process (issue 11 §2).

The worker process does as little as possible per span: it copies the fields of a ``ReadableSpan`` into a
tuple of primitives, and ``marshal`` (C, no class lookups) turns a batch of them into bytes. The resource and
the instrumentation scope are the same object for thousands of spans, so each crosses once per export
process, by index. The export process turns the tuples back into SDK ``ReadableSpan`` objects through their
public constructor and hands them to the SDK's own exporter, which encodes them as it would in-process.

Not carried: the counts of attributes, events and links a span dropped at its limits (the public constructor
cannot set them), and a parent's trace state (OTLP has no field for it).

Frames on the pipes are a 4-byte big-endian length and a ``marshal`` payload.
"""

from __future__ import annotations

import marshal
import struct
from collections.abc import Iterable, Mapping
from typing import IO, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

__all__ = ["SpanTables", "define", "read_frame", "rebuild_span", "span_tuple", "write_frame"]

_LENGTH = struct.Struct(">I")
_KINDS = {kind.value: kind for kind in SpanKind}
_CODES = {code.value: code for code in StatusCode}


def write_frame(stream: IO[bytes], payload: Any) -> None:
    """Write ``payload`` (primitives only) as one length-prefixed frame and flush it."""
    data = marshal.dumps(payload)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """The next frame's payload, or ``None`` at end of file (the other side closed its end or died)."""
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(header)
    data = stream.read(length)
    if len(data) < length:
        return None
    return marshal.loads(data)


class SpanTables:
    """Indexes of the resources and scopes already sent to one export process (``new`` collects the rest)."""

    def __init__(self) -> None:
        self._index: dict[int, int] = {}
        self._keep: list[object] = []  # keeps the objects alive, so an id() is never reused for another
        self.new: list[tuple[int, int, tuple[Any, ...]]] = []  # (0 resource / 1 scope, index, definition)

    def index(self, kind: int, obj: Resource | InstrumentationScope | None) -> int:
        if obj is None:
            return -1
        found = self._index.get(id(obj))
        if found is not None:
            return found
        found = self._index[id(obj)] = len(self._keep)
        self._keep.append(obj)
        if isinstance(obj, Resource):
            self.new.append((kind, found, (dict(obj.attributes), obj.schema_url)))
        else:
            attributes = dict(obj.attributes) if obj.attributes else None
            self.new.append((kind, found, (obj.name, obj.version, obj.schema_url, attributes)))
        return found


def _plain(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    # Copies the SDK's BoundedAttributes through its (public) copy(), in C: dict() of it calls Python-level
    # __iter__/__getitem__ per key and cost as much as the rest of the span's fields together.
    if not attributes:
        return None
    copy = getattr(attributes, "copy", None)
    plain = copy() if copy is not None else None
    return plain if type(plain) is dict else dict(attributes)


def _context(context: SpanContext) -> tuple[int, int, int, str, bool]:
    state = context.trace_state.to_header() if context.trace_state else ""
    return context.trace_id, context.span_id, int(context.trace_flags), state, context.is_remote


def span_tuple(span: ReadableSpan, tables: SpanTables) -> tuple[Any, ...]:
    """The fields of ``span`` the OTLP encoder reads, as primitives."""
    context, parent, status = span.context, span.parent, span.status
    assert context is not None  # the processor skips spans without one
    return (
        _context(context),
        None if parent is None else (parent.trace_id, parent.span_id, int(parent.trace_flags), parent.is_remote),
        span.name,
        span.kind.value,
        span.start_time,
        span.end_time,
        _plain(span.attributes),
        tuple((e.name, e.timestamp, _plain(e.attributes)) for e in span.events) if span.events else (),
        tuple((_context(link.context), _plain(link.attributes)) for link in span.links) if span.links else (),
        status.status_code.value,
        status.description,
        tables.index(0, span.resource),
        tables.index(1, span.instrumentation_scope),
    )


def define(
    definitions: Iterable[tuple[int, int, tuple[Any, ...]]], resources: dict[int, Any], scopes: dict[int, Any]
) -> None:
    """Record the resources and scopes a batch defines (the export process's side of ``SpanTables``)."""
    for kind, index, fields in definitions:
        if kind == 0:
            resources[index] = Resource(fields[0], fields[1])
        else:
            name, version, schema_url, attributes = fields
            scopes[index] = InstrumentationScope(name, version, schema_url, attributes)


def _span_context(fields: tuple[int, int, int, str, bool]) -> SpanContext:
    trace_id, span_id, flags, state, is_remote = fields
    return SpanContext(
        trace_id, span_id, is_remote, TraceFlags(flags), TraceState.from_header([state]) if state else None
    )


def rebuild_span(fields: tuple[Any, ...], resources: dict[int, Any], scopes: dict[int, Any]) -> ReadableSpan:
    """The ``ReadableSpan`` that ``span_tuple`` flattened."""
    context, parent, name, kind, start, end, attributes, events, links, code, description, resource, scope = fields
    return ReadableSpan(
        name=name,
        context=_span_context(context),
        parent=None if parent is None else SpanContext(parent[0], parent[1], parent[3], TraceFlags(parent[2])),
        resource=resources.get(resource),
        attributes=attributes,
        events=[Event(event_name, event_attributes, timestamp) for event_name, timestamp, event_attributes in events],
        links=[Link(_span_context(link_context), link_attributes) for link_context, link_attributes in links],
        kind=_KINDS[kind],
        status=Status(_CODES[code], description),
        start_time=start,
        end_time=end,
        instrumentation_scope=scopes.get(scope),
    )
