"""The OTLP receiver as a process of its own that only counts spans, for benchmarks.

Run it as its own process so its CPU does not share the measured process's GIL::

    python -m otlp_receiver.counting --port 0      # prints "listening <port>" on stdout once ready

Endpoints (besides what :mod:`otlp_receiver.server` serves):
    POST /v1/traces  an ``ExportTraceServiceRequest`` (protobuf, optionally gzip or deflate); answers 200 with an
                     empty ``ExportTraceServiceResponse``, as a collector does. ``/v1/logs`` is not served (404).
    GET  /count      JSON ``{"spans": n, "requests": n, "bytes": n, "by_name": {"send": n, ...}}``.
    POST /reset      zero the counters; answers with the counts before the reset.

Each export is parsed by :func:`otlp_receiver.decoding.parse_traces` and only its span names are read: building
a record per span would spend the CPU the benchmark shares with this process.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections import Counter
from typing import Any

from otlp_receiver.decoding import parse_traces
from otlp_receiver.server import TRACES_PATH, OtlpHttpServer

__all__ = ["SpanCounts", "main", "make_server"]


class SpanCounts:
    """Thread-safe counters of what the process received: the :class:`~otlp_receiver.server.Exports` it serves."""

    paths = frozenset({TRACES_PATH})

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spans = 0
        self.requests = 0
        self.bytes = 0
        self.by_name: Counter[str] = Counter()

    def decode(self, path: str, body: bytes) -> Counter[str]:
        """Spans per operation in one export: span names are "<operation> <queue>"."""
        names: Counter[str] = Counter()
        for resource_spans in parse_traces(body).resource_spans:
            for scope_spans in resource_spans.scope_spans:
                names.update(span.name.split(" ", 1)[0] for span in scope_spans.spans)
        return names

    def keep(self, path: str, decoded: Counter[str], *, encoding: str, body: bytes, size: int) -> None:
        with self._lock:
            self.spans += decoded.total()
            self.requests += 1
            self.bytes += size
            self.by_name.update(decoded)

    def rejected(self, message: str) -> None:
        pass  # the exporter sees the 400; the benchmark compares span counts

    def query(self, method: str, path: str) -> dict[str, Any] | None:
        if (method, path) == ("GET", "/count"):
            return self.snapshot()
        if (method, path) == ("POST", "/reset"):
            return self.snapshot(reset=True)
        return None

    def snapshot(self, *, reset: bool = False) -> dict[str, Any]:
        with self._lock:
            counts = {
                "spans": self.spans,
                "requests": self.requests,
                "bytes": self.bytes,
                "by_name": dict(self.by_name),
            }
            if reset:
                self.spans = self.requests = self.bytes = 0
                self.by_name.clear()
        return counts


def make_server(host: str = "127.0.0.1", port: int = 0) -> OtlpHttpServer:
    """A counting receiver bound to ``host:port`` (0 picks a free port: read it from ``server.port``)."""
    return OtlpHttpServer(SpanCounts(), host=host, port=port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m otlp_receiver.counting",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318, help="0 picks a free port (printed on stdout)")
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port)
    print(f"listening {server.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
