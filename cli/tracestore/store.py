"""The local trace store: spans and log records in one SQLite file, bounded, readable while it is written.

Why SQLite in WAL mode rather than an append-only file: a reader (``trace list``, ``show``, ``tail``) sees a
consistent snapshot of whole transactions while the collector keeps writing, without locks between them,
and one export batch is one transaction, so a reader never sees half of one. Lookups by trace id prefix and
"what changed since" are indexed queries rather than rereading a file, and the bound is a ``DELETE`` in the
same transaction, so no rotation or rename is needed. It is the standard library's ``sqlite3``.

The bound is on size, counted in spans: when the store holds more than ``max_spans``, the traces that
received their last span longest ago are deleted whole (with their log records) until it holds at most 90 %
of it, so pruning runs once per many batches. Log records are bounded by the same number (the oldest go
first). Freed pages are reused, so the file stops growing once it is full.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final

from cli.spanfile import SpanView
from cli.tracestore.database import StoreError, Transaction, connect, dumps_attributes
from cli.tracestore.defaults import DEFAULT_MAX_SPANS
from cli.tracestore.records import LogView

__all__ = ["StoreError", "StoredTrace", "TraceStore", "record_spans_file"]

_PRUNE_TO: Final = 0.9


class StoredTrace:
    """A trace's bookkeeping row: where ``trace list`` and ``tail`` start before reading spans."""

    __slots__ = ("last_received", "last_seq", "span_count", "trace_id")

    def __init__(self, trace_id: str, span_count: int, last_received: float, last_seq: int) -> None:
        self.trace_id, self.span_count, self.last_received, self.last_seq = (
            trace_id,
            span_count,
            last_received,
            last_seq,
        )


class TraceStore:
    """One SQLite trace store. ``create=True`` for writers (the collector, the demo); readers open an existing one.

    Args:
        path: the file; ``:memory:`` for a throwaway store (``trace list --spans-file``).
        create: create the file and its tables when missing; otherwise a missing file is a :class:`StoreError`.
        max_spans: the bound (see the module docstring); only writers prune.
    """

    def __init__(self, path: Path | str, *, create: bool = False, max_spans: int = DEFAULT_MAX_SPANS) -> None:
        if max_spans < 10:
            raise ValueError(f"max_spans must be at least 10, not {max_spans}")
        self.path = str(path)
        self.max_spans = max_spans
        # One connection shared by the collector's handler threads, each write under the lock.
        self._db = connect(self.path, create=create)
        self._lock = threading.Lock()
        self._spans = self._count_spans()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------------------

    def add_spans(self, spans: Iterable[SpanView], *, received: float | None = None) -> int:
        """Keep ``spans`` (one transaction; a span already stored is ignored). Returns how many were new."""
        now = time.time() if received is None else received
        added = 0
        with self._lock, self._transaction():
            for span in spans:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO spans (trace_id, span_id, parent_id, name, service, start_ns, end_ns,"
                    " error, attributes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        span.trace_id,
                        span.span_id,
                        span.parent_id,
                        span.name,
                        span.service,
                        span.start_ns,
                        span.end_ns,
                        span.error,
                        dumps_attributes(span.attributes),
                    ),
                )
                if cursor.rowcount != 1:
                    continue
                added += 1
                self._db.execute(
                    "INSERT INTO traces (trace_id, start_ns, end_ns, span_count, last_received, last_seq)"
                    " VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (trace_id) DO UPDATE SET"
                    " start_ns = min(start_ns, excluded.start_ns), end_ns = max(end_ns, excluded.end_ns),"
                    " span_count = span_count + 1, last_received = excluded.last_received,"
                    " last_seq = excluded.last_seq",
                    (span.trace_id, span.start_ns, span.end_ns, now, cursor.lastrowid),
                )
            self._spans += added
            if self._spans > self.max_spans:
                self._prune()
        return added

    def add_logs(self, records: Iterable[LogView]) -> int:
        """Keep log records (one transaction). Returns how many."""
        rows = [
            (r.trace_id, r.span_id, r.time_ns, r.severity, r.body, r.service, dumps_attributes(r.attributes))
            for r in records
        ]
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT INTO logs (trace_id, span_id, time_ns, severity, body, service, attributes)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            # Beside the records pruned with their traces: records outside any trace (startup lines) or of a
            # trace whose spans never came are bounded too, the oldest going first.
            self._db.execute(
                "DELETE FROM logs WHERE seq <= (SELECT seq FROM logs ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (self.max_spans,),
            )
        return len(rows)

    def _prune(self) -> None:
        self._spans = self._count_spans()  # exact again: another writer (a demo run) may have added some
        excess = self._spans - int(self.max_spans * _PRUNE_TO)
        if excess <= 0:
            return
        doomed: list[str] = []
        for trace_id, count in self._db.execute("SELECT trace_id, span_count FROM traces ORDER BY last_received"):
            if excess <= 0:
                break
            doomed.append(trace_id)
            excess -= count
        for trace_id in doomed:
            self._db.execute("DELETE FROM spans WHERE trace_id = ?", (trace_id,))
            self._db.execute("DELETE FROM logs WHERE trace_id = ?", (trace_id,))
            self._db.execute("DELETE FROM traces WHERE trace_id = ?", (trace_id,))
        self._spans = self._count_spans()

    def _count_spans(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM spans").fetchone()[0])

    def _rows(self, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        """Every row ``sql`` selects, read under the lock the writers hold."""
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    def _transaction(self) -> Transaction:
        return Transaction(self._db)

    # -- reading ---------------------------------------------------------------------------------------------

    def span_count(self) -> int:
        with self._lock:
            return self._count_spans()

    def traces_newest_first(self, page: int = 200) -> Iterator[str]:
        """Every trace id, the latest to start first, read a page at a time."""
        offset = 0
        while True:
            rows = self._rows(
                "SELECT trace_id FROM traces ORDER BY start_ns DESC, trace_id LIMIT ? OFFSET ?", (page, offset)
            )
            yield from (row[0] for row in rows)
            if len(rows) < page:
                return
            offset += page

    def matching(self, prefix: str, limit: int = 11) -> list[str]:
        """Trace ids starting with ``prefix`` (lowercase hex), at most ``limit``."""
        rows = self._rows(
            "SELECT trace_id FROM traces WHERE trace_id >= ? AND trace_id < ? ORDER BY trace_id LIMIT ?",
            (prefix, prefix + "g", limit),  # "g" sorts after every hex digit
        )
        return [row[0] for row in rows]

    def spans(self, trace_id: str) -> list[SpanView]:
        """The spans of one trace, earliest first."""
        rows = self._rows(
            "SELECT trace_id, span_id, parent_id, name, service, start_ns, end_ns, error, attributes"
            " FROM spans WHERE trace_id = ? ORDER BY start_ns, seq",
            (trace_id,),
        )
        return [
            SpanView(
                trace_id=r[0],
                span_id=r[1],
                parent_id=r[2],
                name=r[3],
                service=r[4],
                start_ns=r[5],
                end_ns=r[6],
                error=r[7],
                attributes=json.loads(r[8]),
            )
            for r in rows
        ]

    def logs(self, trace_id: str) -> list[LogView]:
        """The log records of one trace, in time order."""
        rows = self._rows(
            "SELECT trace_id, span_id, time_ns, severity, body, service, attributes FROM logs"
            " WHERE trace_id = ? ORDER BY time_ns, seq",
            (trace_id,),
        )
        return [LogView(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    def changed_since(self, seq: int) -> list[StoredTrace]:
        """Traces that received a span after ``seq`` (see :meth:`last_seq`)."""
        rows = self._rows(
            "SELECT trace_id, span_count, last_received, last_seq FROM traces WHERE last_seq > ? ORDER BY last_seq",
            (seq,),
        )
        return [StoredTrace(*row) for row in rows]

    def last_seq(self) -> int:
        """The sequence number of the latest span stored (0 when empty)."""
        with self._lock:
            return int(self._db.execute("SELECT coalesce(max(last_seq), 0) FROM traces").fetchone()[0])


def record_spans_file(store_path: Path, spans_file: Path, *, offset: int = 0) -> int:
    """Copy the spans of an OTLP/JSON lines file (from byte ``offset``) into the store. Returns how many were new."""
    from cli.spanfile import read_spans

    if not spans_file.exists():
        return 0
    with TraceStore(store_path, create=True) as store:
        return store.add_spans(read_spans(spans_file, offset))
