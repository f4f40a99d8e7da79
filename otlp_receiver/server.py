"""The one OTLP/HTTP server: reads, decompresses and answers export requests for whichever receiver runs it.

``POST /v1/traces`` and ``POST /v1/logs`` bodies may be gzip, deflate or identity, sized by ``Content-Length``
or chunked (Node.js's exporter streams them). What an export becomes is the :class:`Exports` object's business:
a decoding failure is answered 400, a failure to keep it 503 (which OTLP exporters retry, so a batch is never
acknowledged and then lost), success 200 with the empty export response, as a collector does. Requests that are
not exports (the counting process's ``GET /count``) are answered with the JSON :meth:`Exports.query` returns.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

__all__ = ["LOGS_PATH", "TRACES_PATH", "Exports", "OtlpHttpServer"]

TRACES_PATH = "/v1/traces"
LOGS_PATH = "/v1/logs"

_RESPONSES = {
    TRACES_PATH: ExportTraceServiceResponse().SerializeToString(),
    LOGS_PATH: ExportLogsServiceResponse().SerializeToString(),
}


class Exports(Protocol):
    """What a server hands each export request to; every method is called from the handler threads."""

    #: The export paths served (:data:`TRACES_PATH`, :data:`LOGS_PATH`); a POST to any other is a query.
    paths: frozenset[str]

    def decode(self, path: str, body: bytes) -> Any:
        """The uncompressed ``body`` posted to ``path`` decoded; raise to have it answered 400."""

    def keep(self, path: str, decoded: Any, *, encoding: str, body: bytes, size: int) -> None:
        """Keep what :meth:`decode` returned (``size``: bytes on the wire); raise to have it answered 503."""

    def rejected(self, message: str) -> None:
        """A request answered 400 or 503, described."""

    def query(self, method: str, path: str) -> dict[str, Any] | None:
        """The JSON answer to a request that is not an export; None answers 404."""


class OtlpHttpServer(ThreadingHTTPServer):
    """An OTLP/HTTP endpoint on ``host:port`` (0: an ephemeral port) handing its exports to ``exports``."""

    daemon_threads = True

    def __init__(self, exports: Exports, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.exports = exports
        self._in_flight = 0
        self._idle = threading.Condition()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @contextmanager
    def handling(self) -> Iterator[None]:
        """Count a request as in flight while it is handled (see :meth:`drain`)."""
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the requests being handled to finish."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight and time.monotonic() < deadline:
                self._idle.wait(0.05)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a collector: the exporter reuses its connection
    server: OtlpHttpServer

    def do_GET(self) -> None:
        self._query("GET")

    def do_POST(self) -> None:
        with self.server.handling():
            self._post()

    def _post(self) -> None:
        exports = self.server.exports
        path = self.path.split("?", 1)[0]
        if path not in exports.paths:
            self._body()  # read whole, so a kept-alive connection's next request starts where it should
            self._query("POST")
            return
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        try:
            raw = self._body()
            body = _decompress(raw, encoding)
            decoded = exports.decode(path, body)
        except Exception as exc:
            exports.rejected(f"{type(exc).__name__}: {exc}")
            self.close_connection = True  # a body misread leaves the stream at no request boundary
            self._reply(400, str(exc).encode(), "text/plain")
            return
        try:
            exports.keep(path, decoded, encoding=encoding, body=body, size=len(raw))
        except Exception as exc:  # the sink could not keep them: the exporter retries a 503
            exports.rejected(f"sink: {type(exc).__name__}: {exc}")
            self._reply(503, str(exc).encode(), "text/plain")
            return
        self._reply(200, _RESPONSES[path], "application/x-protobuf")

    def _query(self, method: str) -> None:
        answer = self.server.exports.query(method, self.path.split("?", 1)[0])
        if answer is None:
            self._reply(404, b"not found", "text/plain")
        else:
            self._reply(200, json.dumps(answer).encode(), "application/json")

    def _body(self) -> bytes:
        # Node.js's OTLP exporter streams its request: chunked, with no Content-Length.
        if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline(1024).split(b";", 1)[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline(8)  # the CRLF closing the chunk
        while self.rfile.readline(8192).strip():  # trailers, up to the blank line
            pass
        return b"".join(chunks)

    def _reply(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output and the benchmark's stdout clean


def _decompress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding not in ("identity", ""):
        raise ValueError(f"unsupported Content-Encoding {encoding!r}")
    return body
