"""The OTLP/HTTP span exporter we use: the SDK's transport and settings, our encoder, one attempt per export.

The SDK's exporter (opentelemetry-exporter-otlp-proto-http 1.45) retries a failed POST with exponential
backoff until its timeout (10 s by default), logging a warning per retry and an error per batch. Behind a
batching processor that means every batch sent to a dead collector holds the export thread for up to 10 s
and writes four log lines, and a shutdown flush of many batches takes batches x 10 s. Retrying belongs to
the caller, which knows whether there is time left and whether the endpoint is already known to be down:
:class:`observability.sdk.span_queue.QueuedSpanProcessor` backs off after a failure and logs once per interval. So
this exporter makes a single attempt, bounded by the smaller of its own timeout and the caller's budget
(``export_within``), logs nothing per batch, and keeps the cause of the last failure (``last_failure``)
for the caller's log line and metrics.

The single attempt is the SDK client's ``_submit`` (one POST, plus its immediate second try when a pooled
keep-alive connection turned out stale), after its ``_compress``: private methods of
``opentelemetry.exporter.otlp.common.http._OTLPHTTPClient``, pinned by ``uv.lock``. An SDK without them gets
the SDK's own retrying ``export``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from observability.sdk.export_health import ExportFailure
from observability.sdk.otlp_encoding import Encoder, encode_spans

__all__ = ["FastOTLPSpanExporter", "error_type_of"]

_log = logging.getLogger(__name__)
_MAX_MESSAGE = 300  # a requests ConnectionError's text repeats the URL and the socket error; enough for both


def error_type_of(exc: BaseException) -> str:
    """An exception's fully qualified class name (``requests.exceptions.ConnectionError``)."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _failure(exc: BaseException) -> ExportFailure:
    return ExportFailure(error_type_of(exc), f"{error_type_of(exc)}: {exc}"[:_MAX_MESSAGE])


class FastOTLPSpanExporter(OTLPSpanExporter):
    """The OTLP/HTTP exporter with our cached wire encoder, making one bounded attempt per export.

    Transport, headers, compression, timeout and every ``OTEL_EXPORTER_OTLP_*`` setting are the SDK's; the
    span encoding is ours (4-5x cheaper per span, see ``observability/sdk/otlp_encoding.py``) and there is no
    retry loop (see the module docstring).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._encoder = Encoder()
        self._encode_lock = threading.Lock()
        self.last_failure: ExportFailure | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.export_within(spans, None)

    def export_within(self, spans: Sequence[ReadableSpan], timeout: float | None) -> SpanExportResult:
        """Export ``spans`` in one attempt lasting at most ``timeout`` seconds.

        Args:
            spans: the batch.
            timeout: the caller's budget; the exporter's own timeout (``OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT``)
                when ``None`` or shorter.

        Returns:
            ``SUCCESS`` on a 2xx/3xx answer; otherwise ``FAILURE``, with the cause in ``last_failure``.
        """
        client = getattr(self, "_client", None)
        submit = getattr(client, "_submit", None)
        compress = getattr(client, "_compress", None)
        if submit is None or compress is None or self._shutdown:  # an SDK without these private parts
            return super().export(spans)
        try:
            with self._encode_lock:
                data = encode_spans(spans, self._encoder)
        except Exception as exc:
            _log.exception("could not encode %d spans", len(spans))
            self.last_failure = _failure(exc)
            return SpanExportResult.FAILURE
        limit = float(getattr(client, "_timeout", 10.0))
        try:
            response = submit(compress(data), limit if timeout is None else max(0.0, min(limit, timeout)))
        except Exception as exc:  # the transport reports errors in its result; anything raised is unexpected
            self.last_failure = _failure(exc)
            return SpanExportResult.FAILURE
        status: int | None = response.status_code
        if status is not None and 200 <= status < 400:
            self.last_failure = None
            return SpanExportResult.SUCCESS
        if status is not None:
            self.last_failure = ExportFailure(str(status), f"HTTP {status} {response.reason or ''}".rstrip())
        elif response.error is not None:
            self.last_failure = _failure(response.error)
        else:
            self.last_failure = ExportFailure("_OTHER", "no response and no error from the transport")
        return SpanExportResult.FAILURE
