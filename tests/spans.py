"""Helpers to assert span trees: find spans by name, read parents, compare whole attribute dicts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

VOLATILE = ("messaging.message.id", "dramatiq.message.queue_wait_ms", "dramatiq.message.eta")


def named(spans: Iterable[ReadableSpan], name: str) -> list[ReadableSpan]:
    """All spans called ``name``, in end order (never sort by start time alone)."""
    return [span for span in spans if span.name == name]


def one(spans: Iterable[ReadableSpan], name: str) -> ReadableSpan:
    """The single span called ``name``; fails when there are none or several."""
    found = named(spans, name)
    assert len(found) == 1, f"expected one {name!r}, got {[s.name for s in spans]}"
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    """The parent span id, or None for a root."""
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


def is_child(child: ReadableSpan, parent: ReadableSpan) -> bool:
    """True when ``child`` is a direct child of ``parent`` in the same trace."""
    return parent_of(child) == span_id(parent) and trace_id(child) == trace_id(parent)


def stable_attributes(span: ReadableSpan) -> dict[str, Any]:
    """The span's attributes without the ones that differ per run (ids, timings)."""
    return {key: value for key, value in (span.attributes or {}).items() if key not in VOLATILE}


def names(spans: Sequence[ReadableSpan]) -> list[str]:
    return sorted(span.name for span in spans)


def end_spans(provider: TracerProvider, count: int, name: str = "s") -> None:
    """Start and end ``count`` spans named ``name`` on ``provider``'s ``tests`` tracer."""
    tracer = provider.get_tracer("tests")
    for _ in range(count):
        tracer.start_span(name).end()
