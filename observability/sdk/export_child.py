"""The export process: reads batches of flattened spans on stdin, exports them with the SDK, answers per batch.

Started by ``observability/sdk/export_process.py``, one per worker process, as
``python -m observability.sdk.export_child --reply-fd N``, so the encoding and the HTTP/gRPC export hold this
process's GIL instead of the worker's (issue 11 §2). Its exporter is the SDK's, chosen and configured by the
standard ``OTEL_*`` variables it inherits (``observability/sdk/span_exporters.py``).

- It answers on file descriptor N: ``(-1, 0, None, "ready")`` once the exporter is built, then per batch
  ``(seq, spans, None, "")`` or ``(seq, spans, error_type, message)``. stdout stays the worker's, for the console
  exporter.
- It ignores SIGINT and SIGTERM: a Ctrl-C or a ``kill`` of the process group reaches it together with the worker,
  which then still flushes its last spans through it. It exits at end of file on stdin, when the worker closes
  the pipe or dies, even by SIGKILL; the export in progress then is the last one, bounded by the exporter's timeout.
- The SDK exporter logs every retry and failure; those records stop here and their cause becomes the batch's
  ``error_type`` (the exception's class, or the HTTP status), so the worker counts failures once and logs them
  once per interval.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from observability.sdk.export_health import error_type_of
from observability.sdk.span_exporters import make_exporter
from observability.sdk.span_wire import define, read_frame, rebuild_span, write_frame

__all__ = ["main"]

_MAX_MESSAGE = 300  # a requests ConnectionError's text repeats the URL and the socket error; enough for both


class _LastError(logging.Handler):
    """Keeps the cause of the SDK exporter's last failure from the arguments of its log records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.error_type: str | None = None
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING:
            return
        args = record.args if isinstance(record.args, tuple) else ()
        cause = next((arg for arg in args if isinstance(arg, BaseException)), None)
        status = next((arg for arg in args if isinstance(arg, int) and 100 <= arg < 600), None)
        if cause is not None:
            self.error_type = error_type_of(cause)
            self.message = f"{self.error_type}: {cause}"[:_MAX_MESSAGE]
        elif status is not None:
            self.error_type, self.message = str(status), record.getMessage()[:_MAX_MESSAGE]
        elif self.error_type is None:
            self.error_type, self.message = "_OTHER", record.getMessage()[:_MAX_MESSAGE]

    def take(self) -> tuple[str, str]:
        error = (self.error_type or "_OTHER", self.message or "the exporter returned FAILURE")
        self.error_type, self.message = None, ""
        return error


def _export(exporter: SpanExporter, spans: list[Any], last_error: _LastError) -> tuple[str | None, str]:
    last_error.take()  # forget what an earlier batch left
    try:
        result = exporter.export(spans)
    except Exception as exc:
        return error_type_of(exc), f"{error_type_of(exc)}: {exc}"[:_MAX_MESSAGE]
    if result is SpanExportResult.SUCCESS:
        return None, ""
    return last_error.take()


def main(argv: list[str] | None = None) -> int:
    """Run the export loop until stdin ends. Returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m observability.sdk.export_child")
    parser.add_argument("--reply-fd", type=int, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    last_error = _LastError()
    for name in ("opentelemetry.exporter", "urllib3", "requests", "grpc"):
        logger = logging.getLogger(name)
        logger.addHandler(last_error)
        logger.propagate = False
    replies = os.fdopen(args.reply_fd, "wb")
    exporter = make_exporter(os.environ)
    if exporter is None:
        return 2
    resources: dict[int, Any] = {}
    scopes: dict[int, Any] = {}
    write_frame(replies, (-1, 0, None, "ready"))
    stdin = sys.stdin.buffer
    try:
        while (frame := read_frame(stdin)) is not None:
            seq, definitions, flat = frame
            define(definitions, resources, scopes)
            spans = [rebuild_span(fields, resources, scopes) for fields in flat]
            error_type, message = _export(exporter, spans, last_error)
            write_frame(replies, (seq, len(spans), error_type, message))
    except BrokenPipeError:  # the worker is gone: nobody to answer
        pass
    finally:
        exporter.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
