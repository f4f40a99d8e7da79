"""What happened to every span a processor accepted, whether to try the exporter now, and saying so once.

:class:`observability.sdk.span_pipe.PipeSpanProcessor` moves spans; this keeps its books: spans handed to the
exporter, exported, failed (by ``error.type``) and dropped before export (by reason), the backoff after a
failed export, and the log lines about loss: at most one warning per interval however many spans or
batches were lost in it (issue 7, fault 4), and one line when exports recover after a logged failure.
``observability/sdk/export_metrics.py`` reports the counts.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

__all__ = [
    "ALREADY_SHUTDOWN",
    "EXPORT_FAILING",
    "QUEUE_FULL",
    "SHUTDOWN_TIMEOUT",
    "ExportCounts",
    "ExportFailure",
    "ExportHealth",
    "error_type_of",
]

# Why a span never reached the exporter: the ``error.type`` of ``otel.sdk.processor.span.processed``.
QUEUE_FULL: Final = "queue_full"  # the semantic conventions' value
ALREADY_SHUTDOWN: Final = "already_shutdown"  # the semantic conventions' value
EXPORT_FAILING: Final = "export_failing"  # the last export failed: the queue holds one batch until one succeeds
SHUTDOWN_TIMEOUT: Final = "shutdown_timeout"  # still queued when shutdown's deadline passed

_log = logging.getLogger("observability.export")  # the processor's: one logger name for the span export


def error_type_of(exc: BaseException) -> str:
    """An exception's fully qualified class name (``requests.exceptions.ConnectionError``): its ``error.type``."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


class ExportFailure(NamedTuple):
    """Why an export failed: ``error_type`` is low-cardinality (an HTTP status, an exception's class), for
    metrics; ``message`` is for the log line."""

    error_type: str
    message: str


@dataclass(frozen=True)
class ExportCounts:
    """A consistent snapshot. Every ended, sampled span is in exactly one of ``exported``, ``failed``,
    ``dropped`` and ``queued`` (which includes the batches in flight)."""

    submitted: int  # handed to the exporter (exported + failed + the batches in flight)
    exported: int
    failed: int  # in an export that failed
    dropped: int  # never handed to the exporter
    dropped_by: Mapping[str, int]  # reason (QUEUE_FULL, EXPORT_FAILING, ...) -> spans
    failed_by: Mapping[str, int]  # error.type -> spans
    queued: int  # held by the processor: waiting, or sent to the export process and not yet answered


class ExportHealth:
    """The books of one span processor. Thread-safe; a forked child makes a new one.

    Args:
        log_interval: seconds between two warnings about lost spans.
        backoff: seconds without an export attempt after a failed one, doubled after each further failure.
        max_backoff: the longest backoff, so also how late a recovered collector is noticed.
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        *,
        log_interval: float,
        backoff: float,
        max_backoff: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._log_interval = log_interval
        self._first_backoff = backoff
        self._max_backoff = max_backoff
        self._lock = threading.Lock()
        self.submitted = self.exported = self.failed = self.dropped = 0
        self._dropped_by: dict[str, int] = {}
        self._failed_by: dict[str, int] = {}
        self.last_error: str | None = None
        self._backoff = 0.0  # 0: healthy
        self.retry_at = 0.0  # clock() before which no export should be attempted
        self._last_log = -math.inf
        self._lost_logged = 0
        self._failure_logged = False

    @property
    def failing(self) -> bool:
        """The last export failed."""
        return self._backoff > 0

    def counts(self, queued: int) -> ExportCounts:
        """The counts now, with the queue's length."""
        with self._lock:
            counts = (self.submitted, self.exported, self.failed, self.dropped)
            return ExportCounts(*counts, dict(self._dropped_by), dict(self._failed_by), queued)

    def submit(self, count: int) -> None:
        """``count`` spans are being handed to the exporter."""
        with self._lock:
            self.submitted += count

    def drop(self, count: int, reason: str) -> None:
        """``count`` spans will never reach the exporter, because of ``reason``. Logs nothing: see ``report``."""
        with self._lock:
            self.dropped += count
            self._dropped_by[reason] = self._dropped_by.get(reason, 0) + count

    def succeeded(self, count: int) -> None:
        """An export of ``count`` spans succeeded: the backoff, if any, is over."""
        with self._lock:
            self.exported += count
            recovered, self._failure_logged = self._failure_logged, False
            self._backoff = self.retry_at = 0.0
            self.last_error = None
            lost = self.dropped + self.failed
        if recovered:  # only after a logged failure, so flapping cannot log more lines than failures did
            _log.info("span export recovered: %d spans lost so far", lost)

    def failed_export(self, count: int, failure: ExportFailure, *, back_off: bool = True) -> None:
        """An export of ``count`` spans failed: back off (longer each time in a row), unless ``back_off`` is
        False (the spans were lost with the export process, which says nothing about the collector)."""
        with self._lock:
            self.failed += count
            self._failed_by[failure.error_type] = self._failed_by.get(failure.error_type, 0) + count
            self.last_error = failure.message
            if back_off:
                self._backoff = min(self._max_backoff, max(self._first_backoff, self._backoff * 2))
                self.retry_at = self._clock() + self._backoff

    def report(self) -> None:
        """Log the loss so far, if it grew since the last line and the interval has passed since.

        Called by the processor's export thread, so a span dropped in ``on_end`` on a worker thread does not
        log there, with that thread's message and trace ids bound to a line that is not about them.
        """
        now = self._clock()
        with self._lock:
            lost = self.dropped + self.failed
            if lost == self._lost_logged or now - self._last_log < self._log_interval:
                return
            self._last_log, self._lost_logged = now, lost
            error, queue_full = self.last_error, self._dropped_by.get(QUEUE_FULL, 0)
            self._failure_logged = self._failure_logged or error is not None
        if error is not None:
            _log.warning("span export failing: %d spans lost so far (last error: %s)", lost, error)
        else:
            _log.warning("span queue full: %d spans dropped so far", queue_full)
