"""A span processor that survives bursts and a dead collector: bounded queue, batch export, counted loss.

The SDK's ``BatchSpanProcessor`` defaults (2,048 queued spans) dropped up to 11,296 of 20,000 spans in a
publish burst on our two-core machine: its export thread is starved of the GIL while producers spin
(``shared/reference/perf-baseline.md``), and it reports the loss at most once per 20 s. This processor
keeps the same shape (queue, one export thread, batches) with a queue sized for bursts, counts every
span it drops or fails to export, and re-creates its thread in a forked child so a Dramatiq worker
process keeps exporting.

When the collector is down (issue 7, fault 4) nothing is gained by trying every batch: after a failed
export the processor backs off (no attempt for 1 s, doubling up to 10 s), holds at most one batch, and
drops and counts every other span at once, so memory stays bounded and the export thread sleeps. When the
window ends that batch is tried again; the first success ends the backoff. Loss is logged once per
interval, not per span or batch (the books: ``observability/sdk/export_health.py``), and exposed as metrics
by ``observability/sdk/export_metrics.py``. ``force_flush`` and ``shutdown`` take their timeout as a
deadline for the whole call, not per batch, and give what is left of it to our OTLP exporter, which makes
one attempt per export (``observability/sdk/otlp_exporter.py``).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import weakref
from collections import deque

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from observability.hooks import failure_reporter
from observability.sdk.export_health import (
    ALREADY_SHUTDOWN,
    EXPORT_FAILING,
    QUEUE_FULL,
    SHUTDOWN_TIMEOUT,
    ExportCounts,
    ExportFailure,
    ExportHealth,
)
from observability.sdk.otlp_exporter import FastOTLPSpanExporter, error_type_of

__all__ = ["ExportCounts", "FastOTLPSpanExporter", "QueuedSpanProcessor"]

_exporter_raised = failure_reporter(logging.getLogger(__name__), "span export")


class QueuedSpanProcessor(SpanProcessor):
    """Queue ended spans and export them in batches from one background thread.

    Args:
        exporter: where batches go (OTLP in production).
        max_queue_size: spans held before new ones are dropped (and counted).
        max_export_batch_size: spans per export call; reaching it wakes the export thread early. While
            exports fail, the queue holds this many spans at most.
        schedule_delay_millis: the longest a span waits in the queue when traffic is light.
        drop_log_interval: seconds between two warnings about lost spans.
        backoff_millis: no export is attempted for this long after a failed one; doubled after each
            further failure, up to ``max_backoff_millis``.
        max_backoff_millis: the longest backoff, so also how late a recovered collector is noticed.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = 65_536,
        max_export_batch_size: int = 512,
        schedule_delay_millis: float = 1_000,
        drop_log_interval: float = 10.0,
        backoff_millis: float = 1_000,
        max_backoff_millis: float = 10_000,
    ) -> None:
        if max_queue_size < 1 or max_export_batch_size < 1 or max_export_batch_size > max_queue_size:
            raise ValueError("need 1 <= max_export_batch_size <= max_queue_size")
        if not 0 < backoff_millis <= max_backoff_millis:
            raise ValueError("need 0 < backoff_millis <= max_backoff_millis")
        self._exporter = exporter
        self.max_queue_size = max_queue_size
        self._batch_size = max_export_batch_size
        self._delay = schedule_delay_millis / 1000
        self._new_health = functools.partial(
            ExportHealth,
            log_interval=drop_log_interval,
            backoff=backoff_millis / 1000,
            max_backoff=max_backoff_millis / 1000,
        )
        self._shutdown = False
        self._start()
        reinit = weakref.WeakMethod(self._start)
        os.register_at_fork(after_in_child=lambda: (method := reinit()) and method())

    def _start(self) -> None:
        # Called again in a forked child: the parent's thread and locks did not survive the fork, and its
        # counts are the parent's, not this process's.
        self._queue: deque[ReadableSpan] = deque()
        self._limit = self.max_queue_size  # one batch while exports fail
        self._health = self._new_health()
        self._wake = threading.Event()
        self._export_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="QueuedSpanProcessor", daemon=True)
        self._thread.start()

    @property
    def exporter(self) -> SpanExporter:
        """Where batches go."""
        return self._exporter

    @property
    def exported(self) -> int:
        """Spans exported."""
        return self._health.exported

    @property
    def failed(self) -> int:
        """Spans in exports that failed."""
        return self._health.failed

    @property
    def dropped(self) -> int:
        """Spans never handed to the exporter (queue full, exports failing, shut down)."""
        return self._health.dropped

    def counts(self) -> ExportCounts:
        """Every count, consistent with each other (for metrics and tests)."""
        return self._health.counts(len(self._queue))

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        if self._shutdown:
            self._health.drop(1, ALREADY_SHUTDOWN)
            return
        queue, limit = self._queue, self._limit
        if len(queue) >= limit:
            self._health.drop(1, QUEUE_FULL if limit == self.max_queue_size else EXPORT_FAILING)
            return
        queue.append(span)
        if len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        while not self._shutdown:
            retry_in = self._health.retry_at - time.monotonic()
            self._wake.wait(retry_in if retry_in > 0 else self._delay)  # in a backoff: sleep through it
            self._wake.clear()
            if not self._shutdown and time.monotonic() >= self._health.retry_at:  # shutdown exports the rest
                self._export(None)
            self._health.report()

    def _take(self, count: int) -> list[ReadableSpan]:
        batch: list[ReadableSpan] = []
        popleft = self._queue.popleft
        try:
            for _ in range(count):
                batch.append(popleft())
        except IndexError:  # shutdown emptied the queue under a stuck export thread
            pass
        return batch

    def _export(self, deadline: float | None) -> bool:
        """Export queued batches; True when the queue was emptied, False on a failure or at ``deadline``."""
        if not self._export_lock.acquire(timeout=-1 if deadline is None else max(0.0, deadline - time.monotonic())):
            return False
        try:
            while self._queue:
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                if not self._export_batch(self._take(self._batch_size), deadline):
                    self._hold_one_batch()
                    return False
                self._health.report()  # spans dropped in on_end while the queue was full (a long burst)
            return True
        finally:
            self._export_lock.release()

    def _export_batch(self, batch: list[ReadableSpan], deadline: float | None) -> bool:
        if not batch:
            return True
        self._health.submit(len(batch))
        exporter = self._exporter
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            if deadline is not None and isinstance(exporter, FastOTLPSpanExporter):
                result = exporter.export_within(batch, max(0.001, deadline - time.monotonic()))
            else:
                result = exporter.export(batch)
            failure = getattr(exporter, "last_failure", None)
            if not isinstance(failure, ExportFailure):
                failure = ExportFailure("_OTHER", f"{type(exporter).__name__} returned {result.name}")
        except Exception as exc:
            _exporter_raised("the exporter raised")  # the traceback once; the interval warning says the rest
            result, failure = (
                SpanExportResult.FAILURE,
                ExportFailure(error_type_of(exc), f"{error_type_of(exc)}: {exc}"),
            )
        finally:
            detach(token)
        if result is SpanExportResult.SUCCESS:
            self._limit = self.max_queue_size
            self._health.succeeded(len(batch))
            return True
        self._health.failed_export(len(batch), failure)
        return False

    def _hold_one_batch(self) -> None:
        """After a failure: hold one batch at most, dropping (and counting) the newest spans beyond it."""
        self._limit = self._batch_size
        queue, extra = self._queue, 0
        try:
            while len(queue) > self._batch_size:
                queue.pop()
                extra += 1
        except IndexError:
            pass
        if extra:
            self._health.drop(extra, EXPORT_FAILING)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export everything queued now, on the calling thread, within ``timeout_millis`` in total.

        Tried even during a backoff (before a worker exits this is the last chance), but once: if that
        export fails, the queue is cut to one batch, as after any failure.

        Returns:
            Whether everything queued was exported.
        """
        if self._shutdown:
            return False
        exported = self._export(time.monotonic() + timeout_millis / 1000)
        self._health.report()
        return exported

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Stop the thread, export what is left within ``timeout_millis`` in total, shut the exporter down.

        Spans still queued at the deadline are dropped and counted (``shutdown_timeout``).
        """
        if self._shutdown:
            return
        deadline = time.monotonic() + timeout_millis / 1000
        self._shutdown = True
        self._wake.set()
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._export(deadline)
        left = len(self._take(len(self._queue)))
        if left:
            self._health.drop(left, SHUTDOWN_TIMEOUT)
        self._health.report()
        self._exporter.shutdown()
