"""Log records over OTLP, beside the JSON lines on stdout: Loki gets trace ids as structured metadata.

``configure_log_export`` creates this process's ``LoggerProvider`` (same resource as the tracer provider, so
logs, spans and metrics share ``service.name`` and ``service.instance.id``) and puts an
:class:`OtlpLogHandler` on the root logger. Every record, structlog's and the standard library's (Dramatiq,
pika, periodiq), then leaves the process as an OTLP log record carrying the current span's ids.

structlog events reach the standard library still as dicts (``ProcessorFormatter.wrap_for_formatter``);
the handler turns one into a record whose body is the event text and whose attributes are the other keys,
so ``order_id`` is a queryable Loki field rather than a fragment of a JSON string. Severity, time and the
ids are native OTLP fields, so the keys that duplicate them are dropped.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry._logs import set_logger_provider
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogRecordExporter, LogRecordExporter

from observability.personal_data import HIDDEN, shareable_text
from observability.sdk.log_redaction import HideMessageArguments, exception_text
from observability.sdk.tracing_setup import otlp_uses_grpc, process_resource

__all__ = ["OtlpLogHandler", "configure_log_export", "make_log_exporter"]

# Keys structlog adds that OTLP carries natively (severity, timestamp, scope, ids) or that are its own plumbing.
_NATIVE_KEYS: Final = frozenset({"event", "level", "timestamp", "logger", "trace_id", "span_id", "exc_info"})
# Loggers whose records must not be exported: the exporter's own (a failing export would log, export,
# fail, log...) and the HTTP client it uses.
_NOT_EXPORTED: Final = ("opentelemetry", "urllib3", "requests")
# Attribute names a LogRecord already uses; an event key with one of these names gets a trailing underscore.
_RECORD_ATTRIBUTES: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

_configured: dict[int, LoggerProvider | None] = {}


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


def make_log_exporter(env: Mapping[str, str]) -> LogRecordExporter | None:
    """The exporter named by ``OTEL_LOGS_EXPORTER`` (``otlp``, ``console`` or ``none``; ``none`` by default)."""
    name = env.get("OTEL_LOGS_EXPORTER", "none").strip().lower()
    if name in ("none", ""):
        return None
    if name == "console":
        return ConsoleLogRecordExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_LOGS_EXPORTER={name!r} is not supported (use otlp, console or none)")
    if otlp_uses_grpc(env, "LOGS"):
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter()


def configure_log_export(
    *,
    default_service_name: str = "tracedq",
    exporter: LogRecordExporter | None = None,
    environ: Mapping[str, str] | None = None,
    capture_personal_data: bool = False,
) -> LoggerProvider | None:
    """Export this process's log records over OTLP, as ``OTEL_LOGS_EXPORTER`` asks. Idempotent per process.

    Unlike the SDK, the default is ``none``: stdout JSON lines are always written, OTLP only when a
    deployment has a collector to send to. Call it after :func:`observability.sdk.configure_logging`, which
    keeps this handler when it replaces the root handlers.

    Args:
        default_service_name: ``service.name`` when no tracer provider and no ``OTEL_SERVICE_NAME`` set one.
        exporter: overrides the exporter chosen by ``OTEL_LOGS_EXPORTER`` (tests pass one).
        environ: where ``OTEL_*`` values are read; ``os.environ`` by default.
        capture_personal_data: as :func:`observability.sdk.configure_logging`'s.

    Returns:
        The provider, or ``None`` when the SDK is disabled or no exporter is configured.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    pid = os.getpid()
    if pid in _configured:
        return _configured[pid]
    chosen = exporter if exporter is not None else make_log_exporter(env)
    if chosen is None:
        _configured[pid] = None
        return None
    provider = LoggerProvider(resource=process_resource(default_service_name))
    provider.add_log_record_processor(BatchLogRecordProcessor(chosen))
    set_logger_provider(provider)
    handler = OtlpLogHandler(logger_provider=provider, capture_personal_data=capture_personal_data)
    logging.getLogger().addHandler(handler)
    _configured[pid] = provider
    return provider
