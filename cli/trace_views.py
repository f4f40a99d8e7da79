"""What ``tracedq trace ...`` prints: list rows, a trace drawn with its log lines, and the query behind the list."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from cli.tracestore.flow import TraceSummary, summarize
from cli.tracestore.records import LogView
from cli.tracestore.store import TraceStore
from cli.waterfall import draw_trace

__all__ = ["HEADER", "draw_with_logs", "format_row", "recent_summaries"]

HEADER = f"{'TRACE':<32}  {'START':<14}  {'DURATION':>10}  {'SPANS':>5}  {'OUTCOME':<13}  ROOT"


def format_row(summary: TraceSummary) -> str:
    """One line: id, local start time, duration, span count, flow outcome, root span name."""
    start = datetime.fromtimestamp(summary.start_ns / 1e9).strftime("%m-%d %H:%M:%S")
    duration = summary.duration_ms
    shown = f"{duration:.1f} ms" if duration < 10_000 else f"{duration / 1000:.1f} s"
    return (
        f"{summary.trace_id:<32}  {start:<14}  {shown:>10}  {summary.span_count:>5}  {summary.outcome:<13}"
        f"  {summary.root_name}"
    )


def recent_summaries(
    store: TraceStore, *, actor: str | None = None, outcome: str | None = None
) -> Iterator[TraceSummary]:
    """Summaries of the stored traces, newest first, keeping those with ``actor`` and ``outcome`` when given."""
    for trace_id in store.traces_newest_first():
        spans = store.spans(trace_id)
        if not spans:  # pruned between the two reads
            continue
        summary = summarize(spans)
        if actor is not None and actor not in summary.actors:
            continue
        if outcome is not None and summary.outcome != outcome:
            continue
        yield summary


def draw_with_logs(store: TraceStore, trace_id: str) -> list[str]:
    """The waterfall of one stored trace, its outcome, then the log lines that carry its id."""
    spans = store.spans(trace_id)
    summary = summarize(spans)
    services = sorted({span.service for span in spans if span.service})
    lines = draw_trace(spans)
    lines.insert(1, f"  outcome {summary.outcome}, {summary.span_count} spans from {', '.join(services) or '?'}")
    lines.extend(_log_line(record) for record in store.logs(trace_id))
    return lines


def _log_line(record: LogView) -> str:
    body = record.body.replace("\n", " ")
    if len(body) > 100:
        body = body[:99] + "…"
    return f"    log {record.severity:<7} {body}  [{record.service}]"
