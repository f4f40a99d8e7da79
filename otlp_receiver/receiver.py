"""A small OTLP/HTTP receiver for traces and logs: real protobuf in, plain dataclasses out.

It listens on 127.0.0.1 on an ephemeral port in a background thread, accepts ``POST /v1/traces`` and
``POST /v1/logs`` (``Content-Encoding: gzip`` or identity, sized by ``Content-Length`` or chunked), decodes
``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest`` and keeps every span and log record with its
resource attributes. It answers 200 with an empty export response, as a collector does.

Given a :class:`ReceiverSink` (``tracedq dev``'s collector), it hands each request's spans or records to the
sink instead of keeping them in memory, and answers 200 only once the sink has them: when the sink fails the
answer is 503, which OTLP exporters retry, so a batch is never acknowledged and then lost.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.trace import SpanKind, StatusCode

__all__ = ["OtlpReceiver", "ReceivedLog", "ReceivedSpan", "ReceiverSink", "decode_logs_request", "decode_request"]

TRACES_PATH = "/v1/traces"
LOGS_PATH = "/v1/logs"

# OTLP numbers kinds from 1 (INTERNAL) with 0 meaning unspecified, which readers treat as INTERNAL.
_KINDS = {
    ProtoSpan.SPAN_KIND_UNSPECIFIED: SpanKind.INTERNAL,
    ProtoSpan.SPAN_KIND_INTERNAL: SpanKind.INTERNAL,
    ProtoSpan.SPAN_KIND_SERVER: SpanKind.SERVER,
    ProtoSpan.SPAN_KIND_CLIENT: SpanKind.CLIENT,
    ProtoSpan.SPAN_KIND_PRODUCER: SpanKind.PRODUCER,
    ProtoSpan.SPAN_KIND_CONSUMER: SpanKind.CONSUMER,
}


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived over the wire. Ids are lowercase hex; ``parent_span_id`` is "" for a root."""

    name: str
    kind: SpanKind
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    status_code: StatusCode
    resource: dict[str, Any] = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int = 0
    status_message: str = ""


@dataclass(frozen=True)
class ReceivedLog:
    """One log record as it arrived over the wire. Ids are lowercase hex, "" when the record has none."""

    body: Any
    severity_text: str
    severity_number: int
    trace_id: str
    span_id: str
    attributes: dict[str, Any]
    scope: str
    resource: dict[str, Any] = field(default_factory=dict)
    time_ns: int = 0


class ReceiverSink(Protocol):
    """Where a receiver with a sink puts what arrives; called from the HTTP handler threads."""

    def add_spans(self, spans: list[ReceivedSpan]) -> None:
        """Keep ``spans`` durably; raise to have the request answered 503 (the exporter retries)."""

    def add_logs(self, records: list[ReceivedLog]) -> None:
        """Keep ``records`` durably; raise to have the request answered 503 (the exporter retries)."""


def decode_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as the Python value it carries (lists for arrays, dicts for kvlists)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [decode_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return decode_attributes(value.kvlist_value.values)
    return getattr(value, which)


def decode_attributes(attributes: Iterable[KeyValue]) -> dict[str, Any]:
    """OTLP key-values as a plain dict."""
    return {kv.key: decode_value(kv.value) for kv in attributes}


def decode_request(body: bytes) -> list[ReceivedSpan]:
    """Every span in a serialized ``ExportTraceServiceRequest``, each with its resource's attributes."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = decode_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        kind=_KINDS.get(span.kind, SpanKind.INTERNAL),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes=decode_attributes(span.attributes),
                        status_code=StatusCode(span.status.code),
                        resource=resource,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status_message=span.status.message,
                    )
                )
    return spans


def decode_logs_request(body: bytes) -> list[ReceivedLog]:
    """Every log record in a serialized ``ExportLogsServiceRequest``, each with its resource's attributes."""
    request = ExportLogsServiceRequest()
    request.ParseFromString(body)
    records: list[ReceivedLog] = []
    for resource_logs in request.resource_logs:
        resource = decode_attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                records.append(
                    ReceivedLog(
                        body=decode_value(record.body),
                        severity_text=record.severity_text,
                        severity_number=int(record.severity_number),
                        trace_id=record.trace_id.hex(),
                        span_id=record.span_id.hex(),
                        attributes=decode_attributes(record.attributes),
                        scope=scope_logs.scope.name,
                        resource=resource,
                        time_ns=record.time_unix_nano,
                    )
                )
    return records


class OtlpReceiver:
    """An OTLP/HTTP (protobuf) endpoint for traces and logs. Use as a context manager or call start/stop.

    ``endpoint`` is the base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (exporters append ``/v1/traces``,
    ``/v1/logs``).
    """

    def __init__(self, *, port: int = 0, sink: ReceiverSink | None = None) -> None:
        """Bind 127.0.0.1:``port`` (0: an ephemeral port); serving starts with :meth:`start`.

        With a ``sink`` nothing is kept in memory: each request's spans or records go to the sink.
        """
        self._sink = sink
        self._in_flight = 0
        self._lock = threading.Condition()
        self._spans: list[ReceivedSpan] = []
        self._logs: list[ReceivedLog] = []
        self.requests = 0
        self.encodings: list[str] = []
        self.trace_bodies: list[bytes] = []  # each trace request's serialized ExportTraceServiceRequest
        self.errors: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop accepting connections, then wait up to ``drain_timeout`` s for requests being handled."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        deadline = time.monotonic() + drain_timeout
        with self._lock:
            while self._in_flight and time.monotonic() < deadline:
                self._lock.wait(0.05)

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def spans(self) -> list[ReceivedSpan]:
        """A snapshot of every span received so far, in arrival order."""
        with self._lock:
            return list(self._spans)

    def spans_named(self, name: str) -> list[ReceivedSpan]:
        return [span for span in self.spans if span.name == name]

    @property
    def logs(self) -> list[ReceivedLog]:
        """A snapshot of every log record received so far, in arrival order."""
        with self._lock:
            return list(self._logs)

    def wait_for_logs(self, predicate: Callable[[list[ReceivedLog]], bool], timeout: float) -> bool:
        """Block until ``predicate(logs)`` holds or ``timeout`` seconds pass; return whether it held."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(list(self._logs)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.1))
            return True

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()
            self._logs.clear()
            self.encodings.clear()
            self.trace_bodies.clear()
            self.errors.clear()
            self.requests = 0

    def wait_for(self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float) -> bool:
        """Block until ``predicate(spans)`` holds or ``timeout`` seconds pass; return whether it held."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(list(self._spans)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.1))
            return True

    def _store(self, spans: list[ReceivedSpan], encoding: str, body: bytes) -> None:
        if self._sink is not None:
            self._sink.add_spans(spans)
            return
        with self._lock:
            self._spans.extend(spans)
            self.trace_bodies.append(body)
            self.requests += 1
            self.encodings.append(encoding)
            self._lock.notify_all()

    def _store_logs(self, records: list[ReceivedLog]) -> None:
        # Not counted in ``requests``/``encodings``: those describe trace exports, which tests count.
        if self._sink is not None:
            self._sink.add_logs(records)
            return
        with self._lock:
            self._logs.extend(records)
            self._lock.notify_all()

    def _error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)
            self._lock.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                with receiver._lock:
                    receiver._in_flight += 1
                try:
                    self._post()
                finally:
                    with receiver._lock:
                        receiver._in_flight -= 1
                        receiver._lock.notify_all()

            def _post(self) -> None:
                path = self.path.split("?", 1)[0]
                if path not in (TRACES_PATH, LOGS_PATH):
                    self._reply(404, b"", "text/plain")
                    return
                encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
                try:
                    body = self._body()
                    if encoding == "gzip":
                        body = gzip.decompress(body)
                    elif encoding not in ("identity", ""):
                        raise ValueError(f"unsupported Content-Encoding {encoding!r}")
                    if path == LOGS_PATH:
                        records = decode_logs_request(body)
                    else:
                        spans = decode_request(body)
                except Exception as exc:
                    receiver._error(f"{type(exc).__name__}: {exc}")
                    self.close_connection = True  # a body misread leaves the stream at no request boundary
                    self._reply(400, str(exc).encode(), "text/plain")
                    return
                try:
                    if path == LOGS_PATH:
                        receiver._store_logs(records)
                    else:
                        receiver._store(spans, encoding, body)
                except Exception as exc:  # the sink could not keep them: the exporter retries a 503
                    receiver._error(f"sink: {type(exc).__name__}: {exc}")
                    self._reply(503, str(exc).encode(), "text/plain")
                    return
                if path == LOGS_PATH:
                    self._reply(200, ExportLogsServiceResponse().SerializeToString(), "application/x-protobuf")
                    return
                self._reply(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

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
                pass  # keep pytest output clean

        return Handler
