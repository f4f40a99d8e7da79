"""Reading span trees as the in-test OTLP receiver got them from other processes (``ReceivedSpan``s, hex ids)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from otlp_receiver import ReceivedSpan

__all__ = ["child", "children", "hex_ids", "only", "process_spans"]


def hex_ids(span: Any) -> tuple[str, str]:
    """(trace id, span id) of an SDK span in this process, as the hex the OTLP receiver reports."""
    context = span.get_span_context()
    assert context is not None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def only(spans: Iterable[ReceivedSpan], name: str, trace_id: str | None = None) -> ReceivedSpan:
    """The single span called ``name`` (in ``trace_id`` when given); fails when there are none or several."""
    found = [s for s in spans if s.name == name and (trace_id is None or s.trace_id == trace_id)]
    assert len(found) == 1, f"expected one {name!r}, got {len(found)} among {sorted(s.name for s in spans)}"
    return found[0]


def children(spans: Iterable[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_span_id == parent.span_id and s.trace_id == parent.trace_id]


def child(spans: Iterable[ReceivedSpan], parent: ReceivedSpan, name: str) -> ReceivedSpan:
    """The single direct child of ``parent`` called ``name``."""
    found = [s for s in children(spans, parent) if s.name == name]
    assert len(found) == 1, (
        f"expected one {name!r} under {parent.name!r}, got {sorted(s.name for s in children(spans, parent))}"
    )
    return found[0]


def process_spans(spans: Iterable[ReceivedSpan], queue: str) -> list[ReceivedSpan]:
    """The ``process <queue>`` spans among ``spans``."""
    return [span for span in spans if span.name == f"process {queue}"]
