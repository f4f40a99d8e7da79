"""Draw finished spans as a terminal waterfall: one trace, its tree, offsets and durations to scale."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

__all__ = ["draw_trace", "group_by_trace"]

_BAR_WIDTH = 40
_KEYS = ("dramatiq.message.outcome", "dramatiq.message.retries", "dramatiq.message.dead_letter_reason")


def group_by_trace(spans: Sequence[ReadableSpan]) -> dict[int, list[ReadableSpan]]:
    """Spans keyed by trace id, in the order their traces first appear."""
    traces: dict[int, list[ReadableSpan]] = defaultdict(list)
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        assert span.context is not None
        traces[span.context.trace_id].append(span)
    return dict(traces)


def draw_trace(spans: Sequence[ReadableSpan]) -> list[str]:
    """Render one trace as lines: tree indentation, a bar placed at the span's offset, duration, outcome."""
    start = min(s.start_time or 0 for s in spans)
    end = max(s.end_time or 0 for s in spans)
    total = max(end - start, 1)
    ids = {s.context.span_id for s in spans if s.context is not None}
    children: dict[int | None, list[ReadableSpan]] = defaultdict(list)
    for span in spans:
        parent = span.parent.span_id if span.parent is not None and span.parent.span_id in ids else None
        children[parent].append(span)
    assert spans[0].context is not None
    lines = [f"trace {spans[0].context.trace_id:032x}  ({total / 1e6:.1f} ms)"]

    def walk(parent: int | None, depth: int) -> None:
        for span in sorted(children[parent], key=lambda s: s.start_time or 0):
            offset = ((span.start_time or 0) - start) / total
            length = max(((span.end_time or 0) - (span.start_time or 0)) / total, 0)
            left = int(offset * _BAR_WIDTH)
            bar = " " * left + "█" * max(1, int(length * _BAR_WIDTH))
            label = ("  " * depth + span.name)[:34]
            attributes = span.attributes or {}
            marks = " ".join(f"{k.rsplit('.', 1)[-1]}={attributes[k]!s}" for k in _KEYS if k in attributes)
            if span.status.status_code is StatusCode.ERROR:
                marks = f"ERROR {span.status.description} {marks}"
            duration = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
            lines.append(f"  {label:<34} |{bar:<{_BAR_WIDTH}}| {duration:7.2f} ms  {marks}".rstrip())
            assert span.context is not None
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return lines
