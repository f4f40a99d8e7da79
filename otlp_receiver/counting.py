"""A minimal OTLP/HTTP trace receiver for benchmarks: decodes every export and counts the spans.

Run it as its own process so its CPU does not share the measured process's GIL::

    python -m otlp_receiver.counting --port 0     # prints "listening <port>" on stdout once ready

Endpoints:
    POST /v1/traces  an ``ExportTraceServiceRequest`` (protobuf, optionally gzip); answers 200 with an
                     empty ``ExportTraceServiceResponse``, as a collector does.
    GET  /count      JSON ``{"spans": n, "requests": n, "bytes": n, "by_name": {"send": n, ...}}``.
    POST /reset      zero the counters; answers with the counts before the reset.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import threading
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

__all__ = ["SpanCounts", "main", "make_server"]

_EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()


class SpanCounts:
    """Thread-safe counters of what the sink received."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spans = 0
        self.requests = 0
        self.bytes = 0
        self.by_name: Counter[str] = Counter()

    def add(self, request: ExportTraceServiceRequest, size: int) -> None:
        names: Counter[str] = Counter()
        spans = 0
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans += 1
                    # Span names are "<operation> <queue>": count per operation.
                    names[span.name.split(" ", 1)[0]] += 1
        with self._lock:
            self.spans += spans
            self.requests += 1
            self.bytes += size
            self.by_name.update(names)

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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a collector: the exporter reuses its connection
    server: _SinkServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: dict[str, Any]) -> None:
        self._reply(200, json.dumps(data).encode(), "application/json")

    def do_GET(self) -> None:
        if self.path == "/count":
            self._json(self.server.counts.snapshot())
        else:
            self._reply(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/reset":
            self._json(self.server.counts.snapshot(reset=True))
            return
        if self.path != "/v1/traces":
            self._reply(404, b"not found", "text/plain")
            return
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
        except Exception as exc:
            self._reply(400, str(exc).encode(), "text/plain")
            return
        self.server.counts.add(request, length)
        self._reply(200, _EMPTY_RESPONSE, "application/x-protobuf")


class _SinkServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.counts = SpanCounts()


def make_server(host: str = "127.0.0.1", port: int = 0) -> _SinkServer:
    """A sink bound to ``host:port`` (0 picks a free port: read it from ``server.server_address``)."""
    return _SinkServer((host, port))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318, help="0 picks a free port (printed on stdout)")
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port)
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
