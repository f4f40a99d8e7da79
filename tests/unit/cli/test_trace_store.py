"""The local trace store: bounded by span count (oldest traces go whole), readable while written, exact lookups."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from cli.tracestore.records import LogView
from cli.tracestore.store import StoreError, TraceStore
from tests.unit.cli.views import span


def trace_of(n: int, size: int) -> list:
    """Trace number ``n`` with ``size`` spans."""
    tid = f"{n:04x}"
    return [span(tid, f"{i:x}", f"s{i}", parent="0" if i else None, start=n * 100 + i) for i in range(size)]


def test_the_bound_deletes_the_oldest_traces_whole_with_their_logs(tmp_path: Path) -> None:
    with TraceStore(tmp_path / "t.db", create=True, max_spans=100) as store:
        for n in range(12):  # 12 traces of 10 spans: 120 > 100
            store.add_spans(trace_of(n, 10), received=1000.0 + n)
            store.add_logs([LogView(f"{n:04x}".ljust(32, "0"), "", n, "info", f"log {n}", "svc")])
        # Over 100 at the 11th trace: pruned down to at most 90 (the 2 oldest go), then the 12th comes.
        kept = list(store.traces_newest_first())
        assert [t[:4] for t in kept] == [f"{n:04x}" for n in range(11, 1, -1)]
        assert store.span_count() == 100
        assert store.logs("0000".ljust(32, "0")) == []
        assert [r.body for r in store.logs("0002".ljust(32, "0"))] == ["log 2"]
        store.add_spans(trace_of(12, 10), received=2000.0)
        assert store.span_count() == 90  # pruned again: to 90 % of the bound, not one trace at a time
        assert "0002".ljust(32, "0") not in store.traces_newest_first()


def test_log_records_are_bounded_too(tmp_path: Path) -> None:
    with TraceStore(tmp_path / "t.db", create=True, max_spans=10) as store:
        store.add_logs([LogView("", "", i, "info", f"line {i}", "svc") for i in range(25)])
        store.add_logs([LogView("", "", 99, "info", "last", "svc")])
    db = sqlite3.connect(tmp_path / "t.db")
    bodies = [row[0] for row in db.execute("SELECT body FROM logs ORDER BY seq")]
    assert bodies == [f"line {i}" for i in range(16, 25)] + ["last"]


def test_a_span_sent_twice_is_stored_once(tmp_path: Path) -> None:
    with TraceStore(tmp_path / "t.db", create=True) as store:
        assert store.add_spans(trace_of(1, 3)) == 3
        assert store.add_spans(trace_of(1, 3)) == 0  # an exporter's retry of a batch that did arrive
        assert len(store.spans("0001".ljust(32, "0"))) == 3


def test_readers_see_whole_batches_while_a_writer_writes(tmp_path: Path) -> None:
    """Each batch is one trace of 5 spans: a reader in another connection never sees a trace with fewer."""
    path = tmp_path / "t.db"
    writer = TraceStore(path, create=True)
    done = threading.Event()
    seen_counts: set[int] = set()

    def write() -> None:
        for n in range(300):
            writer.add_spans(trace_of(n, 5))
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    with TraceStore(path) as reader:
        while not done.is_set():
            for trace_id in reader.traces_newest_first():
                seen_counts.add(len(reader.spans(trace_id)))
        thread.join()
        assert len(list(reader.traces_newest_first())) == 300
    writer.close()
    assert seen_counts <= {5}


def test_prefix_lookup_and_changes_since(tmp_path: Path) -> None:
    with TraceStore(tmp_path / "t.db", create=True) as store:
        store.add_spans([span("abc1", "1", "a"), span("abc2", "1", "b"), span("abd", "1", "c")])
        assert store.matching("abc") == ["abc1".ljust(32, "0"), "abc2".ljust(32, "0")]
        assert store.matching("abd") == ["abd".ljust(32, "0")]
        assert store.matching("f") == []
        seq = store.last_seq()
        store.add_spans([span("abd", "2", "d", parent="1")], received=5.0)
        changed = store.changed_since(seq)
        assert [(c.trace_id[:3], c.span_count, c.last_received) for c in changed] == [("abd", 2, 5.0)]


def test_readers_do_not_create_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no trace store at"):
        TraceStore(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("PRAGMA user_version=7").connection.close()
    with pytest.raises(StoreError, match="not a tracedq trace store of version 1"):
        TraceStore(other)
