"""``tracedq trace tail``: print each trace of the local store as it completes (cli/tracestore/completion.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from cli.trace_views import draw_with_logs, format_row
from cli.tracestore.completion import TailTracker
from cli.tracestore.flow import summarize
from cli.tracestore.store import StoredTrace, StoreError, TraceStore

__all__ = ["tail"]


def tail(
    store_path: Path,
    tracker: TailTracker,
    write: Callable[[str], None],
    *,
    stop: threading.Event,
    poll: float = 0.5,
    clock: Callable[[], float] = time.time,
) -> None:
    """Print the traces that receive spans from now on, each once it is complete, until ``stop`` is set."""
    store = _open_when_there(store_path, write, stop)
    if store is None:
        return
    with store:
        seq = store.last_seq()
        write(f"following {store_path}: each new trace is printed once it is complete (Ctrl-C stops)")
        waiting: dict[str, StoredTrace] = {}
        while not stop.is_set():
            for changed in store.changed_since(seq):
                waiting[changed.trace_id] = changed
                seq = max(seq, changed.last_seq)
            now = clock()
            for trace_id, stored in list(waiting.items()):
                spans = store.spans(trace_id)
                if not spans:  # pruned meanwhile
                    del waiting[trace_id]
                    continue
                summary = summarize(spans)
                if tracker.due(
                    trace_id,
                    span_count=summary.span_count,
                    outcome=summary.outcome,
                    last_received=stored.last_received,
                    now=now,
                ):
                    write(format_row(summary))
                    for line in draw_with_logs(store, trace_id):
                        write(line)
                    write("")
                    tracker.printed(trace_id, summary.span_count)
                    del waiting[trace_id]
            stop.wait(poll)


def _open_when_there(path: Path, write: Callable[[str], None], stop: threading.Event) -> TraceStore | None:
    said = False
    while not stop.is_set():
        try:
            return TraceStore(path)
        except StoreError:
            if not said:
                write(f"waiting for {path}: start `tracedq dev` and its collector creates it")
                said = True
        stop.wait(0.5)
    return None
