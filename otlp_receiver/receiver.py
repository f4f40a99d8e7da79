"""The in-thread OTLP/HTTP receiver for traces and logs: real protobuf in, plain dataclasses out.

It listens on 127.0.0.1 on an ephemeral port in a background thread, accepts ``POST /v1/traces`` and
``POST /v1/logs`` (see :mod:`otlp_receiver.server`), and keeps every span and log record with its resource
attributes, for tests and ``tracedq demo --broker amqp://...`` to read.

Given a :class:`ReceiverSink` (``tracedq dev``'s collector), it hands each request's spans or records to the
sink instead of keeping them in memory, and answers 200 only once the sink has them: when the sink fails the
answer is 503, which OTLP exporters retry, so a batch is never acknowledged and then lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from otlp_receiver.decoding import decode_logs_request, decode_request
from otlp_receiver.records import ReceivedLog, ReceivedSpan, ReceiverSink
from otlp_receiver.server import LOGS_PATH, TRACES_PATH, OtlpHttpServer

__all__ = ["OtlpReceiver"]

_Item = TypeVar("_Item", ReceivedSpan, ReceivedLog)


class OtlpReceiver:
    """An OTLP/HTTP (protobuf) endpoint for traces and logs. Use as a context manager or call start/stop.

    ``endpoint`` is the base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (exporters append ``/v1/traces``,
    ``/v1/logs``).
    """

    paths = frozenset({TRACES_PATH, LOGS_PATH})

    def __init__(self, *, port: int = 0, sink: ReceiverSink | None = None) -> None:
        """Bind 127.0.0.1:``port`` (0: an ephemeral port); serving starts with :meth:`start`.

        With a ``sink`` nothing is kept in memory: each request's spans or records go to the sink.
        """
        self._sink = sink
        self._lock = threading.Condition()
        self._spans: list[ReceivedSpan] = []
        self._logs: list[ReceivedLog] = []
        self.requests = 0
        self.encodings: list[str] = []
        self.trace_bodies: list[bytes] = []  # each trace request's serialized ExportTraceServiceRequest
        self.errors: list[str] = []
        self._server = OtlpHttpServer(self, port=port)
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)

    @property
    def port(self) -> int:
        return self._server.port

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
        self._server.drain(drain_timeout)

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

    def wait_for(self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float) -> bool:
        """Block until ``predicate(spans)`` holds or ``timeout`` seconds pass; return whether it held."""
        return self._wait(self._spans, predicate, timeout)

    def wait_for_logs(self, predicate: Callable[[list[ReceivedLog]], bool], timeout: float) -> bool:
        """Block until ``predicate(logs)`` holds or ``timeout`` seconds pass; return whether it held."""
        return self._wait(self._logs, predicate, timeout)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()
            self._logs.clear()
            self.encodings.clear()
            self.trace_bodies.clear()
            self.errors.clear()
            self.requests = 0

    def _wait(self, items: Sequence[_Item], predicate: Callable[[list[_Item]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(list(items)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.1))
            return True

    # -- otlp_receiver.server.Exports: called from the handler threads -----------------------------------------

    def decode(self, path: str, body: bytes) -> list[ReceivedSpan] | list[ReceivedLog]:
        return decode_logs_request(body) if path == LOGS_PATH else decode_request(body)

    def keep(self, path: str, decoded: Any, *, encoding: str, body: bytes, size: int) -> None:
        if path == LOGS_PATH:
            self._store_logs(decoded)
        else:
            self._store(decoded, encoding, body)

    def rejected(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)
            self._lock.notify_all()

    def query(self, method: str, path: str) -> dict[str, Any] | None:
        return None  # exports only

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
