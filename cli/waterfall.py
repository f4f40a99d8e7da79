"""Draw one trace as a terminal waterfall: its tree, offsets and durations to scale, errors and retries marked."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from cli.spanfile import SpanView
from observability import semconv

__all__ = ["draw_trace", "group_by_trace"]

_BAR_WIDTH = 40
_KEYS = (semconv.OUTCOME, semconv.RETRIES, semconv.DEAD_LETTER_REASON)


def group_by_trace(spans: Sequence[SpanView]) -> dict[str, list[SpanView]]:
    """Spans keyed by trace id, in the order their traces first start."""
    traces: dict[str, list[SpanView]] = defaultdict(list)
    for span in sorted(spans, key=lambda s: s.start_ns):
        traces[span.trace_id].append(span)
    return dict(traces)


def draw_trace(spans: Sequence[SpanView]) -> list[str]:
    """Render one trace as lines: tree indentation, a bar placed at the span's offset, duration, outcome."""
    start = min(s.start_ns for s in spans)
    total = max(max(s.end_ns for s in spans) - start, 1)
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[SpanView]] = defaultdict(list)
    for span in spans:
        children[span.parent_id if span.parent_id in ids else None].append(span)
    lines = [f"trace {spans[0].trace_id}  ({total / 1e6:.1f} ms)"]

    services = {s.span_id: s.service for s in spans}

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children[parent], key=lambda s: s.start_ns):
            left = int((span.start_ns - start) / total * _BAR_WIDTH)
            width = max(1, int((span.end_ns - span.start_ns) / total * _BAR_WIDTH))
            bar = " " * left + "█" * width
            label = ("  " * depth + span.name)[:34]
            marks = " ".join(f"{k.rsplit('.', 1)[-1]}={span.attributes[k]!s}" for k in _KEYS if k in span.attributes)
            if span.error is not None:
                marks = f"ERROR {span.error} {marks}"
            if span.service and span.service != services.get(parent or ""):
                marks = f"[{span.service}] {marks}"  # where a trace crosses into another service
            duration = (span.end_ns - span.start_ns) / 1e6
            lines.append(f"  {label:<34} |{bar:<{_BAR_WIDTH}}| {duration:7.2f} ms  {marks}".rstrip())
            walk(span.span_id, depth + 1)

    walk(None, 0)
    return lines
