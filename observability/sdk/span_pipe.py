"""Span export off the worker's GIL: finished spans go through a pipe to an export process (issue 11 §2).

Encoding and the HTTP export held the worker's GIL and cost a Dramatiq worker 27-57 % of its throughput. Here the
worker's own work per span is an append to a bounded deque (``on_end``), and a sender thread flattens batches
into tuples of primitives (``observability/sdk/span_wire.py``) and writes them to the export process's stdin,
which blocks without the GIL. The export process (``observability/sdk/export_child.py``, one per worker process,
started on the first span, after any fork) encodes and exports them with the SDK's exporter and answers each batch.
A reader thread turns the answers into the books of ``ExportHealth``, so the export metrics and the
once-per-interval warnings keep their meaning.

- Nothing blocks a worker thread: beyond ``max_queue_size`` spans are dropped and counted (``queue_full``).
- After a failed export the processor backs off and holds one batch, dropping and counting the rest
  (``export_failing``); at most one batch is in the export process then, so memory stays bounded.
- If the export process dies, the spans it had not answered are counted as failed (``export_process_died``) and it
  is restarted (``observability/sdk/export_link.py``). If it cannot be started, the processor falls back to the
  SDK's ``BatchSpanProcessor`` in this process (``observability/sdk/inline_span_export.py``) and says so once.
- ``force_flush`` and ``shutdown`` keep their deadline for the whole call; ``shutdown`` closes the pipe (the export
  process exits once it has answered) and kills the process at the deadline, counting what it had not answered.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from observability.sdk.export_health import (
    ALREADY_SHUTDOWN,
    SHUTDOWN_TIMEOUT,
    ExportCounts,
    ExportHealth,
)
from observability.sdk.export_link import EXPORT_PROCESS_DIED, ExportLink, Flush
from observability.sdk.export_process import default_command
from observability.sdk.pending_spans import PendingSpans
from observability.sdk.span_exporters import exporter_component_type, exporter_name
from observability.sdk.span_sender import SpanSender

__all__ = ["EXPORT_PROCESS_DIED", "PipeSpanProcessor"]


class PipeSpanProcessor(SpanSender, SpanProcessor):
    """Queue ended spans and have a separate export process export them.

    Args:
        environ: the export process's environment, so its ``OTEL_*`` settings; ``os.environ`` by default.
        command: the export process's command line, without ``--reply-fd`` (tests pass one that fails).
        max_queue_size: spans held before new ones are dropped (and counted).
        max_export_batch_size: spans per batch; reaching it wakes the sender early.
        schedule_delay_millis: the longest a span waits in the queue when traffic is light.
        drop_log_interval: seconds between two warnings about lost spans.
        backoff_millis: no batch is sent for this long after a failed export; doubled after each further failure,
            up to ``max_backoff_millis``.
        max_backoff_millis: the longest backoff, so also how late a recovered collector is noticed.
        start_timeout_millis: how long the export process may take to get ready before it counts as not starting.

    Raises:
        ValueError: impossible sizes, or ``OTEL_TRACES_EXPORTER=none`` in ``environ``.
    """

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        command: Sequence[str] | None = None,
        max_queue_size: int = 65_536,
        max_export_batch_size: int = 512,
        schedule_delay_millis: float = 1_000,
        drop_log_interval: float = 10.0,
        backoff_millis: float = 1_000,
        max_backoff_millis: float = 10_000,
        start_timeout_millis: float = 30_000,
    ) -> None:
        if max_queue_size < 1 or max_export_batch_size < 1 or max_export_batch_size > max_queue_size:
            raise ValueError("need 1 <= max_export_batch_size <= max_queue_size")
        if not 0 < backoff_millis <= max_backoff_millis:
            raise ValueError("need 0 < backoff_millis <= max_backoff_millis")
        self._environ = dict(os.environ if environ is None else environ)
        if exporter_name(self._environ) == "none":
            raise ValueError("OTEL_TRACES_EXPORTER=none: there is nothing for an export process to export to")
        self.max_queue_size = max_queue_size
        self.exporter_type = exporter_component_type(self._environ)  # otel.component.type, for the metrics
        self._new_pending = functools.partial(PendingSpans, max_queue_size, max_export_batch_size)
        self._delay = schedule_delay_millis / 1000
        self._new_health = functools.partial(
            ExportHealth,
            log_interval=drop_log_interval,
            backoff=backoff_millis / 1000,
            max_backoff=max_backoff_millis / 1000,
        )
        self._new_link = functools.partial(
            ExportLink,
            list(command) if command is not None else default_command(),
            self._environ,
            start_timeout_millis / 1000,
        )
        self._fallback: SpanProcessor | None = None
        self._shutdown = False
        self._reset()
        reset = weakref.WeakMethod(self._after_fork)
        os.register_at_fork(after_in_child=lambda: (method := reset()) and method())

    def _reset(self) -> None:
        self._health = health = self._new_health()
        self._pending = self._new_pending(health)
        self._wake = threading.Event()
        self._link = self._new_link(
            submitted=health.submit,
            answered=self._answered,
            lost=functools.partial(health.failed_export, back_off=False),  # says nothing about the collector
            wake=self._wake.set,
        )
        self._flushing = 0  # force_flush calls waiting: send now, backoff or not
        self._sender: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopping = False

    def _after_fork(self) -> None:
        # A forked worker process starts its own export process: the parent's is the parent's, and the threads
        # and locks did not survive the fork.
        self._link.abandon()
        self._reset()

    def counts(self) -> ExportCounts:
        """Every count, consistent with each other (for metrics and tests); ``queued`` includes spans in flight."""
        return self._health.counts(len(self._pending) + self._link.held())

    @property
    def process_pid(self) -> int | None:
        """The export process's pid while one runs."""
        return self._link.pid

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        fallback = self._fallback
        if fallback is not None:
            fallback.on_end(span)
            return
        if self._shutdown:
            self._health.drop(1, ALREADY_SHUTDOWN)
            return
        if self._sender is None:
            self._start_sender()
        if self._pending.offer(span) and not self._wake.is_set():
            self._wake.set()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Send everything queued now, backoff or not, and wait for the answers, within ``timeout_millis``.

        Returns:
            Whether every span queued before the call was exported in time and none was lost meanwhile.
        """
        if self._shutdown:
            return False
        deadline = time.monotonic() + timeout_millis / 1000
        if self._sender is None and not self._pending:
            return True  # no span ended in this process yet
        lost = self._lost()
        flush = Flush()
        self._flushing += 1  # under the GIL; only read as "some flush waits"
        try:
            self._start_sender()
            self._pending.mark(flush)
            self._wake.set()
            done = flush.done.wait(max(0.0, deadline - time.monotonic()))
        finally:
            self._flushing -= 1
        fallback = self._fallback
        if fallback is not None:
            done = fallback.force_flush(max(0, int((deadline - time.monotonic()) * 1000))) and done
        self._health.report()
        return done and self._lost() == lost

    def _lost(self) -> int:
        counts = self._health.counts(0)
        return counts.failed + counts.dropped

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Flush within ``timeout_millis`` in total, then stop the export process; what it had not answered by
        the deadline is counted as failed and what was still queued as dropped (both ``shutdown_timeout``)."""
        if self._shutdown:
            return
        deadline = time.monotonic() + timeout_millis / 1000
        self.force_flush(timeout_millis)
        self._shutdown = self._stopping = True
        self._wake.set()
        self._link.close(deadline - time.monotonic())
        if self._sender is not None:
            self._sender.join(max(0.1, deadline - time.monotonic()))
        left = self._pending.drain(lambda span: None)
        if left:
            self._health.drop(left, SHUTDOWN_TIMEOUT)
        if self._fallback is not None:
            self._fallback.shutdown()
        self._health.report()
