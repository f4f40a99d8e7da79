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
  is restarted (after 0.1 s, doubling to 10 s while it keeps dying). If it cannot be started, the processor falls
  back to the SDK's ``BatchSpanProcessor`` in this process (``observability/sdk/span_fallback.py``) and says so once.
- ``force_flush`` and ``shutdown`` keep their deadline for the whole call; ``shutdown`` closes the pipe (the export
  process exits once it has answered) and kills the process at the deadline, counting what it had not answered.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

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
from observability.sdk.export_process import ExportProcess, ExportProcessError, default_command
from observability.sdk.span_exporters import exporter_component_type, exporter_name, make_exporter
from observability.sdk.span_fallback import CountedBatchSpanProcessor
from observability.sdk.span_wire import SpanTables, span_tuple

__all__ = ["EXPORT_PROCESS_DIED", "PipeSpanProcessor"]

EXPORT_PROCESS_DIED = "export_process_died"  # error.type of the spans an export process took with it
_WINDOW = 2  # batches sent and not yet answered: one exporting, one ready in the pipe
_log = logging.getLogger("observability.export")
_sender_failed = failure_reporter(_log, "span sender")


class _Flush:
    """A marker in the queue: done once every span queued before it is exported, failed or dropped."""

    __slots__ = ("done", "seq")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.seq = 0  # the last batch sent before the marker was reached


class PipeSpanProcessor(SpanProcessor):
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
        self._command = list(command) if command is not None else default_command()
        self.max_queue_size = max_queue_size
        self.exporter_type = exporter_component_type(self._environ)  # otel.component.type, for the metrics
        self._batch_size = max_export_batch_size
        self._delay = schedule_delay_millis / 1000
        self._start_timeout = start_timeout_millis / 1000
        self._new_health = functools.partial(
            ExportHealth,
            log_interval=drop_log_interval,
            backoff=backoff_millis / 1000,
            max_backoff=max_backoff_millis / 1000,
        )
        self._fallback: SpanProcessor | None = None
        self._shutdown = False
        self._reset()
        reset = weakref.WeakMethod(self._after_fork)
        os.register_at_fork(after_in_child=lambda: (method := reset()) and method())

    def _reset(self) -> None:
        self._queue: deque[ReadableSpan | _Flush] = deque()
        self._limit = self.max_queue_size  # one batch while exports fail
        self._health = self._new_health()
        self._wake = threading.Event()
        self._cond = threading.Condition()  # guards the process, the batches in flight and the flush markers
        self._inflight: dict[int, int] = {}  # batch sequence number -> spans, in sending order
        self._flushes: list[_Flush] = []
        self._seq = 0
        self._flushing = 0  # force_flush calls waiting: send now, backoff or not
        self._process: ExportProcess | None = None
        self._tables = SpanTables()
        self._restart_at = 0.0
        self._restart_delay = 0.0
        self._sender: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopping = False

    def _after_fork(self) -> None:
        # A forked worker process starts its own export process: the parent's is the parent's, and the threads
        # and locks did not survive the fork.
        if self._process is not None:
            self._process.abandon()
        self._reset()

    def counts(self) -> ExportCounts:
        """Every count, consistent with each other (for metrics and tests); ``queued`` includes spans in flight."""
        with self._cond:
            held = len(self._queue) + sum(self._inflight.values())
        return self._health.counts(held)

    @property
    def process_pid(self) -> int | None:
        """The export process's pid while one runs."""
        process = self._process
        return None if process is None else process.pid

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
        queue, limit = self._queue, self._limit
        if len(queue) >= limit:
            self._health.drop(1, QUEUE_FULL if limit == self.max_queue_size else EXPORT_FAILING)
            return
        queue.append(span)
        if len(queue) >= self._batch_size and not self._wake.is_set():
            self._wake.set()

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
        while self._queue and not self._stopping and (partial or len(self._queue) >= self._batch_size):
            if self._fallback is not None:
                self._drain_to_fallback()
                return
            health = self._health
            if health.failing and time.monotonic() < health.retry_at and not self._flushing:
                return
            process = self._process or self._start_process()
            if process is None:
                if self._fallback is not None:
                    continue  # drains the queue into the fallback
                return  # a restart is due later
            if not self._window_open(process, 1 if health.failing else _WINDOW):
                continue
            batch, flush = self._take()
            if batch:
                self._send(process, batch)
            if flush is not None:
                with self._cond:
                    flush.seq = self._seq
                    self._flushes.append(flush)
                    self._settle()

    def _window_open(self, process: ExportProcess, window: int) -> bool:
        """Wait up to 1 s until fewer than ``window`` batches await an answer; False if not, or ``process`` died."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._inflight) < window or self._process is not process, 1.0)
            return len(self._inflight) < window and self._process is process

    def _take(self) -> tuple[list[ReadableSpan], _Flush | None]:
        batch: list[ReadableSpan] = []
        popleft = self._queue.popleft
        try:
            while len(batch) < self._batch_size:
                item = popleft()
                if isinstance(item, _Flush):
                    return batch, item
                batch.append(item)
        except IndexError:
            pass
        return batch, None

    def _send(self, process: ExportProcess, batch: list[ReadableSpan]) -> None:
        tables = self._tables
        flat = [span_tuple(span, tables) for span in batch]
        definitions, tables.new = tables.new, []
        with self._cond:
            if self._process is not process:  # it died meanwhile: the next one gets these spans
                self._queue.extendleft(reversed(batch))
                return
            self._seq += 1
            seq = self._seq
            self._inflight[seq] = len(batch)
        self._health.submit(len(batch))
        try:
            process.send((seq, definitions, flat))
        except ValueError as exc:  # marshal met an attribute value that is not a primitive
            self._answered(seq, type(exc).__qualname__, f"{type(exc).__qualname__}: {exc}")
        except OSError:  # the process died; its reader counts the batch
            process.kill()

    def _start_process(self) -> ExportProcess | None:
        if time.monotonic() < self._restart_at and not self._flushing:
            return None
        try:
            process = ExportProcess.start(self._command, self._environ, self._start_timeout)
        except ExportProcessError as exc:
            self._fall_back(str(exc))
            return None
        self._tables = SpanTables()
        with self._cond:
            self._process = process
        threading.Thread(target=self._read_loop, args=(process,), name="PipeSpanProcessor-answers", daemon=True).start()
        return process

    def _read_loop(self, process: ExportProcess) -> None:
        for seq, _, error_type, message in process.replies():
            self._answered(seq, error_type, message)
        self._died(process)

    def _answered(self, seq: int, error_type: str | None, message: str) -> None:
        with self._cond:
            count = self._inflight.pop(seq, 0)
        if error_type is None:
            self._limit, self._restart_delay = self.max_queue_size, 0.0
            self._health.succeeded(count)
        else:
            self._health.failed_export(count, ExportFailure(error_type, message))
            self._hold_one_batch()
        with self._cond:
            self._settle()

    def _died(self, process: ExportProcess) -> None:
        status = process.wait(1.0)
        with self._cond:
            if self._process is process:
                self._process = None
            lost = sum(self._inflight.values())
            self._inflight.clear()
            self._settle()
        if self._stopping:
            reason, text = SHUTDOWN_TIMEOUT, "still exporting at the shutdown deadline"
        else:
            reason, text = EXPORT_PROCESS_DIED, f"the export process {process.pid} exited with status {status}"
            self._restart_delay = min(10.0, max(0.1, self._restart_delay * 2))
            self._restart_at = time.monotonic() + self._restart_delay
            _log.warning("%s with %d spans unanswered; restarting it in %.1f s", text, lost, self._restart_delay)
            self._wake.set()
        if lost:
            self._health.failed_export(lost, ExportFailure(reason, text), back_off=False)

    def _settle(self) -> None:
        """Mark the flushes whose batches are all answered (or lost) done. Called with ``_cond`` held."""
        answered = min(self._inflight) - 1 if self._inflight else self._seq
        waiting = [flush for flush in self._flushes if flush.seq > answered]
        for flush in self._flushes:
            if flush.seq <= answered:
                flush.done.set()
        self._flushes = waiting
        self._cond.notify_all()

    def _hold_one_batch(self) -> None:
        """After a failure: hold one batch at most, dropping (and counting) the newest spans beyond it."""
        self._limit = self._batch_size
        queue, extra, flushes = self._queue, 0, list[_Flush]()
        try:
            while len(queue) > self._batch_size + len(flushes):
                item = queue.pop()
                if isinstance(item, _Flush):
                    flushes.append(item)  # still waits for the held batch
                else:
                    extra += 1
        except IndexError:
            pass
        queue.extend(reversed(flushes))
        if extra:
            self._health.drop(extra, EXPORT_FAILING)

    def _fall_back(self, reason: str) -> None:
        exporter = make_exporter(self._environ)
        assert exporter is not None  # checked in __init__
        _log.warning(
            "span export process could not be started (%s): exporting spans in this process with the SDK's "
            "BatchSpanProcessor",
            reason,
        )
        self._fallback = CountedBatchSpanProcessor(exporter, self._environ, health=self._health)
        self._drain_to_fallback()

    def _drain_to_fallback(self) -> None:
        fallback, popleft = self._fallback, self._queue.popleft
        assert fallback is not None
        try:
            while True:
                item = popleft()
                if isinstance(item, _Flush):
                    item.done.set()
                else:
                    fallback.on_end(item)
        except IndexError:
            pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Send everything queued now, backoff or not, and wait for the answers, within ``timeout_millis``.

        Returns:
            Whether every span queued before the call was exported in time and none was lost meanwhile.
        """
        if self._shutdown:
            return False
        deadline = time.monotonic() + timeout_millis / 1000
        if self._sender is None and not self._queue:
            return True  # no span ended in this process yet
        counts = self._health.counts(0)
        lost = counts.failed + counts.dropped
        flush = _Flush()
        with self._cond:
            self._flushing += 1
        try:
            self._start_sender()
            self._queue.append(flush)  # not counted against the limit: it holds no span
            self._wake.set()
            done = flush.done.wait(max(0.0, deadline - time.monotonic()))
        finally:
            with self._cond:
                self._flushing -= 1
        fallback = self._fallback
        if fallback is not None:
            done = fallback.force_flush(max(0, int((deadline - time.monotonic()) * 1000))) and done
        self._health.report()
        counts = self._health.counts(0)
        return done and counts.failed + counts.dropped == lost

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Flush within ``timeout_millis`` in total, then stop the export process; what it had not answered by
        the deadline is counted as failed and what was still queued as dropped (both ``shutdown_timeout``)."""
        if self._shutdown:
            return
        deadline = time.monotonic() + timeout_millis / 1000
        self.force_flush(timeout_millis)
        self._shutdown = self._stopping = True
        self._wake.set()
        process = self._process
        if process is not None:
            process.close(deadline - time.monotonic())  # its reader counts what it had not answered
            self._wait_for(lambda: not self._inflight, 1.0)
        if self._sender is not None:
            self._sender.join(max(0.1, deadline - time.monotonic()))
        left = 0
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, _Flush):
                item.done.set()
            else:
                left += 1
        if left:
            self._health.drop(left, SHUTDOWN_TIMEOUT)
        if self._fallback is not None:
            self._fallback.shutdown()
        self._health.report()

    def _wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)
