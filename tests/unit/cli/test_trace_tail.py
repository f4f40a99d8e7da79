"""``trace tail``: a closed flow prints after a quiet spell, an open one waits; each trace once per new span count."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from cli.trace_tail import tail
from cli.tracestore.completion import TailTracker
from cli.tracestore.store import TraceStore
from tests.environment.polling import wait_until
from tests.unit.cli.views import process, send, span


def test_a_closed_flow_is_due_after_settle_an_open_one_after_the_open_timeout() -> None:
    tracker = TailTracker(settle=2, open_timeout=60)
    assert not tracker.due("t", span_count=3, outcome="success", last_received=100, now=101.9)
    assert tracker.due("t", span_count=3, outcome="success", last_received=100, now=102)
    assert not tracker.due("t", span_count=3, outcome="retrying", last_received=100, now=159)
    assert tracker.due("t", span_count=3, outcome="pending", last_received=100, now=160)


def test_a_printed_trace_is_due_again_only_with_new_spans() -> None:
    tracker = TailTracker(settle=2, open_timeout=60)
    tracker.printed("t", 3)
    assert not tracker.due("t", span_count=3, outcome="success", last_received=100, now=500)
    assert tracker.due("t", span_count=5, outcome="success", last_received=100, now=500)


def test_tail_prints_new_complete_traces_only(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    lines: list[str] = []
    stop = threading.Event()
    with TraceStore(path, create=True) as store:
        store.add_spans([span("0ld", "1", "before tail started")])
        # A clock far ahead: every trace has been quiet long enough, so only the open/closed rule decides.
        thread = threading.Thread(
            target=tail,
            args=(path, TailTracker(settle=2, open_timeout=60), lines.append),
            kwargs={"stop": stop, "poll": 0.02, "clock": lambda: time.time() + 30},
        )
        thread.start()
        try:
            assert wait_until(lambda: any(line.startswith("following ") for line in lines), timeout=30)
            store.add_spans([span("a0", "1", "POST /orders"), send("a0", "2", "orders", "m1", parent="1")])
            store.add_spans([span("b0", "1", "GET /health")])
            assert wait_until(lambda: any("GET /health" in line for line in lines), timeout=30)
            # The order is pending (sent, not processed): still waiting while the health trace is out.
            assert not any(line.startswith("a0") for line in lines)
            store.add_spans([process("a0", "3", "orders", "m1", "success", parent="2")])
            assert wait_until(lambda: any(line.startswith("a0") for line in lines), timeout=30)
        finally:
            stop.set()
            thread.join()
    rows = [line for line in lines if line[:1] in "0123456789abcdef" and "  " in line]
    assert [(row[:2], row.split()[6]) for row in rows] == [("b0", "none"), ("a0", "success")]
    assert not any("before tail started" in line for line in lines)
