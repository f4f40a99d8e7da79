"""The worker's side of the pipe: the current export process, its batches in flight, flush markers, restarts.

``observability/sdk/span_pipe.py`` decides what to send and when; this sends it and keeps track of what the export
process has not answered yet. A reader thread per export process reports each answer back. When the process dies,
every batch it had not answered is reported lost at once (``export_process_died``; one it had already sent to the
collector may have arrived: the count errs on the side of loss, never of delivery), flushes waiting for those
batches are released, and a new process is started on the next send, after a delay that doubles (0.1 s to 10 s)
while processes keep dying without answering.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from opentelemetry.sdk.trace import ReadableSpan

from observability.sdk.export_health import SHUTDOWN_TIMEOUT, ExportFailure
from observability.sdk.export_process import ExportProcess
from observability.sdk.span_wire import SpanTables, span_tuple

__all__ = ["EXPORT_PROCESS_DIED", "ExportLink", "Flush"]

EXPORT_PROCESS_DIED = "export_process_died"  # error.type of the spans an export process took with it
_log = logging.getLogger("observability.export")


class Flush:
    """A marker in the span queue: done once every span queued before it is exported, failed or dropped."""

    __slots__ = ("done", "seq")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.seq = 0  # the last batch sent before the marker was reached


class ExportLink:
    """Batches to one export process at a time.

    Args:
        command: the export process's command line.
        environ: its environment.
        start_timeout: seconds it may take to get ready.
        submitted: called with the size of each batch about to be written to the pipe.
        answered: called with (spans, error_type or None, message) for each answer, on the reader thread.
        lost: called with (spans, failure) for the batches a dead export process had not answered.
        wake: called when a new process may be started (the sender should try again).
    """

    def __init__(
        self,
        command: Sequence[str],
        environ: Mapping[str, str],
        start_timeout: float,
        *,
        submitted: Callable[[int], None],
        answered: Callable[[int, str | None, str], None],
        lost: Callable[[int, ExportFailure], None],
        wake: Callable[[], None],
    ) -> None:
        self._command, self._environ, self._start_timeout = command, environ, start_timeout
        self._submitted, self._answered, self._lost, self._wake = submitted, answered, lost, wake
        self._cond = threading.Condition()  # guards the process, the batches in flight and the flush markers
        self._process: ExportProcess | None = None
        self._tables = SpanTables()
        self._inflight: dict[int, int] = {}  # batch sequence number -> spans, in sending order
        self._flushes: list[Flush] = []
        self._seq = 0
        self._restart_at = 0.0
        self._restart_delay = 0.0
        self.stopping = False  # set by shutdown: a process that exits now is not restarted

    @property
    def pid(self) -> int | None:
        """The export process's pid while one runs."""
        process = self._process
        return None if process is None else process.pid

    def held(self) -> int:
        """Spans sent and not yet answered."""
        with self._cond:
            return sum(self._inflight.values())

    def ready(self, *, urgent: bool) -> ExportProcess | None:
        """The running export process, or a new one if none runs and the restart delay has passed (or ``urgent``).

        Raises:
            ExportProcessError: a new one could not be started.
        """
        if self._process is not None:
            return self._process
        if time.monotonic() < self._restart_at and not urgent:
            return None
        process = ExportProcess.start(self._command, self._environ, self._start_timeout)
        self._tables = SpanTables()  # a new process knows no resource or scope yet
        with self._cond:
            self._process = process
        threading.Thread(target=self._read, args=(process,), name="PipeSpanProcessor-answers", daemon=True).start()
        return process

    def window_open(self, process: ExportProcess, window: int) -> bool:
        """Wait up to 1 s until fewer than ``window`` batches await an answer; False if not, or ``process`` died."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._inflight) < window or self._process is not process, 1.0)
            return len(self._inflight) < window and self._process is process

    def send(self, process: ExportProcess, batch: list[ReadableSpan]) -> bool:
        """Send ``batch``, or return False.

        Returns:
            False if ``process`` died first: the batch was not sent and should be queued again.
        """
        tables = self._tables
        flat = [span_tuple(span, tables) for span in batch]
        definitions, tables.new = tables.new, []
        with self._cond:
            if self._process is not process:
                return False
            self._seq += 1
            seq = self._seq
            self._inflight[seq] = len(batch)
        self._submitted(len(batch))
        try:
            process.send((seq, definitions, flat))
        except ValueError as exc:  # marshal met an attribute value that is not a primitive
            self._answer(seq, type(exc).__qualname__, f"{type(exc).__qualname__}: {exc}")
        except OSError:  # it died; its reader counts the batch
            process.kill()
        return True

    def reached(self, flush: Flush) -> None:
        """The sender reached ``flush`` in the queue: it is done once the batches sent so far are answered."""
        with self._cond:
            flush.seq = self._seq
            self._flushes.append(flush)
            self._settle()

    def close(self, timeout: float) -> None:
        """Close the pipe so the export process exits once it has answered; kill it after ``timeout`` seconds.
        What it had not answered is reported lost (``shutdown_timeout``) before this returns (1 s at most)."""
        self.stopping = True
        process = self._process
        if process is None:
            return
        process.close(timeout)
        with self._cond:
            self._cond.wait_for(lambda: self._process is not process, 1.0)

    def abandon(self) -> None:
        """In a forked child: let go of the parent's export process without touching it."""
        if self._process is not None:
            self._process.abandon()

    def _read(self, process: ExportProcess) -> None:
        for seq, _, error_type, message in process.replies():
            self._answer(seq, error_type, message)
        self._died(process)

    def _answer(self, seq: int, error_type: str | None, message: str) -> None:
        with self._cond:
            count = self._inflight.pop(seq, 0)
        if error_type is None:
            self._restart_delay = 0.0
        self._answered(count, error_type, message)
        with self._cond:
            self._settle()

    def _died(self, process: ExportProcess) -> None:
        status = process.wait(1.0)
        with self._cond:
            lost = sum(self._inflight.values())
            self._inflight.clear()
        if self.stopping:
            failure = ExportFailure(SHUTDOWN_TIMEOUT, "still exporting at the shutdown deadline")
        else:
            text = f"the export process {process.pid} exited with status {status}"
            failure = ExportFailure(EXPORT_PROCESS_DIED, text)
            self._restart_delay = min(10.0, max(0.1, self._restart_delay * 2))
            self._restart_at = time.monotonic() + self._restart_delay
            _log.warning("%s with %d spans unanswered; restarting it in %.1f s", text, lost, self._restart_delay)
        if lost:
            self._lost(lost, failure)
        with self._cond:
            if self._process is process:
                self._process = None
            self._settle()
        self._wake()

    def _settle(self) -> None:
        """Mark the flushes whose batches are all answered (or lost) done. Called with ``_cond`` held."""
        answered = min(self._inflight) - 1 if self._inflight else self._seq
        for flush in self._flushes:
            if flush.seq <= answered:
                flush.done.set()
        self._flushes = [flush for flush in self._flushes if flush.seq > answered]
        self._cond.notify_all()
