"""``tracedq dev``'s trace collector: OTLP/HTTP traces and logs in, the local trace store out.

Run as ``python -m cli.dev.collector --port 4318 --store .tracedq/traces.db``. A batch is answered 200 once
it is committed to the store, 503 when it could not be (the exporter sends it again). SIGTERM or SIGINT
stops it after the requests being handled are stored.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cli.spanfile import SpanView
from cli.tracestore.defaults import DEFAULT_MAX_SPANS
from cli.tracestore.records import LogView, log_view, span_view
from cli.tracestore.store import TraceStore
from otlp_receiver import OtlpReceiver, ReceivedLog, ReceivedSpan

__all__ = ["StoreSink", "main"]

_View = TypeVar("_View", SpanView, LogView)


class StoreSink:
    """The receiver's sink: each request's spans or records go to the store in one transaction, and are counted."""

    def __init__(self, store: TraceStore) -> None:
        self.store = store
        self.spans = 0
        self.logs = 0
        self._failures = 0
        self._lock = threading.Lock()  # the counts are updated from every handler thread

    def add_spans(self, spans: list[ReceivedSpan]) -> None:
        added = self._write(self.store.add_spans, [span_view(span) for span in spans])
        with self._lock:
            self.spans += added

    def add_logs(self, records: list[ReceivedLog]) -> None:
        added = self._write(self.store.add_logs, [log_view(record) for record in records])
        with self._lock:
            self.logs += added

    def _write(self, write: Callable[[list[_View]], int], views: list[_View]) -> int:
        """``write(views)``: how many were new; a failure is counted and said, then raised (the answer is 503)."""
        try:
            return write(views)
        except Exception as exc:
            self._failed(exc)
            raise

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            self._failures += 1
            failures = self._failures
        if failures in (1, 10, 100) or failures % 1000 == 0:  # said, not repeated per batch
            print(f"cannot write {self.store.path} ({failures} batches refused so far): {exc}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.dev.collector", description=__doc__)
    parser.add_argument("--port", type=int, default=4318)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--max-spans", type=int, default=DEFAULT_MAX_SPANS)
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with TraceStore(args.store, create=True, max_spans=args.max_spans) as store:
        sink = StoreSink(store)
        try:
            receiver = OtlpReceiver(port=args.port, sink=sink).start()
        except OSError as exc:
            print(f"cannot listen on 127.0.0.1:{args.port}: {exc}", flush=True)
            return 1
        print(
            f"OTLP/HTTP traces and logs on {receiver.endpoint} -> {args.store} (bounded: {args.max_spans} spans)",
            flush=True,
        )
        while not stop.wait(0.5):  # a timeout, so the signal handler runs promptly
            pass
        receiver.stop()
        print(
            f"stored {sink.spans} spans and {sink.logs} log records this run; {store.span_count()} spans in the store",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
