"""The root logger's handler that turns every record into an OTLP log record carrying the current span's ids.

``observability/sdk/log_export.py`` puts an :class:`OtlpLogHandler` on the root logger when logs are exported.
Every record, structlog's and the standard library's (Dramatiq, pika, periodiq), then leaves the process as
an OTLP log record; Loki gets the trace ids as structured metadata.

structlog events reach the standard library still as dicts (``ProcessorFormatter.wrap_for_formatter``);
the handler turns one into a record whose body is the event text and whose attributes are the other keys,
so ``order_id`` is a queryable Loki field rather than a fragment of a JSON string. Severity, time and the
ids are native OTLP fields, so the keys that duplicate them are dropped.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Final

from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider

from observability.personal_data import HIDDEN, shareable_text
from observability.sdk.log_redaction import HideMessageArguments, exception_text

__all__ = ["OtlpLogHandler"]

# Keys structlog adds that OTLP carries natively (severity, timestamp, scope, ids) or that are its own plumbing.
_NATIVE_KEYS: Final = frozenset({"event", "level", "timestamp", "logger", "trace_id", "span_id", "exc_info"})
# Loggers whose records must not be exported: the exporter's own (a failing export would log, export,
# fail, log...) and the HTTP client it uses.
_NOT_EXPORTED: Final = ("opentelemetry", "urllib3", "requests")
# Attribute names a LogRecord already uses; an event key with one of these names gets a trailing underscore.
_RECORD_ATTRIBUTES: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class OtlpLogHandler(LoggingHandler):
    """OpenTelemetry's logging handler that understands structlog events and never raises.

    Args:
        logger_provider: where records go; the global provider by default.
        level: the lowest level exported.
    """

    def __init__(
        self,
        logger_provider: LoggerProvider | None = None,
        level: int = logging.NOTSET,
        *,
        capture_personal_data: bool = False,
    ) -> None:
        super().__init__(level=level, logger_provider=logger_provider)
        self.capture_personal_data = capture_personal_data
        if not capture_personal_data:
            self.addFilter(HideMessageArguments())

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(_NOT_EXPORTED):
            return
        try:
            flat = _flatten(record) if isinstance(record.msg, dict) else _without_private(record)
            if not self.capture_personal_data and flat.exc_info:
                _hide_exception_text(flat)
            super().emit(flat)
        except Exception:
            self.handleError(record)


def _flatten(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of a structlog record: body = the event text, attributes = the other event keys."""
    event: dict[str, Any] = dict(record.msg)  # type: ignore[arg-type]  # msg is the event dict here
    flat = _without_private(record)
    flat.msg, flat.args = str(event.get("event", "")), ()
    if event.get("exc_info"):
        exc_info = event["exc_info"]
        flat.exc_info = sys.exc_info() if exc_info is True else exc_info if isinstance(exc_info, tuple) else None
    for key, value in event.items():
        if key in _NATIVE_KEYS or value is None:
            continue
        name = f"{key}_" if key in _RECORD_ATTRIBUTES else key
        setattr(flat, name, _attribute_value(value))
    return flat


def _hide_exception_text(record: logging.LogRecord) -> None:
    """The ``exception.*`` attributes the base handler would set from ``exc_info``, with texts hidden."""
    exc_info = record.exc_info
    record.exc_info = None
    if not exc_info or exc_info[1] is None:
        return
    exception = exc_info[1]
    text = shareable_text(exception, capture=False)
    setattr(record, "exception.type", type(exception).__name__)
    setattr(record, "exception.message", HIDDEN if text is None else text)
    setattr(record, "exception.stacktrace", exception_text(exc_info, capture=False))


def _without_private(record: logging.LogRecord) -> logging.LogRecord:
    # structlog adds `_logger`, `_name` and `_from_structlog` to records: objects, not attribute values.
    return logging.makeLogRecord({k: v for k, v in vars(record).items() if not k.startswith("_")})


def _attribute_value(value: Any) -> Any:
    """A value OTLP attributes accept: primitives and homogeneous lists as they are, anything else as text."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple) and value and all(isinstance(item, str) for item in value):
        return list(value)
    return str(value)
