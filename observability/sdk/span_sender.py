"""The sender thread of ``PipeSpanProcessor``: what to send to the export process, and when.

One thread per worker process wakes when a batch is full, when the schedule delay passes or when a flush
waits, and sends queued spans through the ``ExportLink`` (``observability/sdk/export_link.py``) within the
window of batches the export process may hold: two while exports succeed, one while they fail. After a
failed export it backs off; if the export process cannot be started it hands the queue to the SDK's
``BatchSpanProcessor`` in this process (``observability/sdk/inline_span_export.py``).

:class:`SpanSender` is a base class of ``PipeSpanProcessor`` (``observability/sdk/span_pipe.py``), which
holds the queue, the books and the link this thread uses: the worker's ``on_end`` stays a method of one
object, with no extra call per span.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Final

from opentelemetry.sdk.trace import SpanProcessor

from observability.failure_reporting import failure_reporter
from observability.sdk.export_health import ExportFailure, ExportHealth
from observability.sdk.export_link import ExportLink
from observability.sdk.export_process import ExportProcessError
from observability.sdk.inline_span_export import CountedBatchSpanProcessor
from observability.sdk.pending_spans import PendingSpans
from observability.sdk.span_exporters import make_exporter

__all__ = ["SpanSender"]

_WINDOW: Final = 2  # batches sent and not yet answered: one exporting, one ready in the pipe
_log = logging.getLogger("observability.export")
_sender_failed = failure_reporter(_log, "span sender")


class SpanSender:
    """The sender thread's half of ``PipeSpanProcessor``; the processor sets every attribute below."""

    _environ: dict[str, str] | Mapping[str, str]
    _delay: float
    _health: ExportHealth
    _pending: PendingSpans
    _wake: threading.Event
    _link: ExportLink
    _flushing: int  # force_flush calls waiting: send now, backoff or not
    _sender: threading.Thread | None
    _start_lock: threading.Lock
    _stopping: bool
    _fallback: SpanProcessor | None

    def _start_sender(self) -> None:
        with self._start_lock:
            if self._sender is None:
                sender = threading.Thread(target=self._send_loop, name="PipeSpanProcessor", daemon=True)
                sender.start()
                self._sender = sender

    def _send_loop(self) -> None:
        while not self._stopping:
            health = self._health
            retry_in = health.retry_at - time.monotonic()
            woken = self._wake.wait(retry_in if health.failing and retry_in > 0 else self._delay)
            self._wake.clear()
            try:
                # A part batch only when the delay has passed or a flush waits: a batch per span (under a
                # trickle of spans) would cost an HTTP request per span in the export process.
                self._send_queued(partial=not woken or self._flushing > 0)
            except Exception:
                _sender_failed("the span sender failed")
            health.report()

    def _send_queued(self, *, partial: bool) -> None:
        pending, health = self._pending, self._health
        while pending and not self._stopping and (partial or len(pending) >= pending.batch_size):
            if self._fallback is not None:
                pending.drain(self._fallback.on_end)
                return
            if health.failing and time.monotonic() < health.retry_at and not self._flushing:
                return
            try:
                process = self._link.ready(urgent=self._flushing > 0)
            except ExportProcessError as exc:
                self._fall_back(str(exc))
                continue
            if process is None:
                return  # a restart is due later
            if not self._link.window_open(process, 1 if health.failing else _WINDOW):
                continue
            batch, flush = pending.take()
            if batch and not self._link.send(process, batch):
                pending.put_back(batch)  # it died meanwhile: the next one gets these spans
                continue
            if flush is not None:
                self._link.reached(flush)

    def _answered(self, count: int, error_type: str | None, message: str) -> None:
        if error_type is None:
            self._pending.recovered()
            self._health.succeeded(count)
        else:
            self._health.failed_export(count, ExportFailure(error_type, message))
            self._pending.hold_one_batch()

    def _fall_back(self, reason: str) -> None:
        exporter = make_exporter(self._environ)
        assert exporter is not None  # checked in __init__
        _log.warning(
            "span export process could not be started (%s): exporting spans in this process with the SDK's "
            "BatchSpanProcessor",
            reason,
        )
        self._fallback = fallback = CountedBatchSpanProcessor(exporter, self._environ, health=self._health)
        self._pending.drain(fallback.on_end)
