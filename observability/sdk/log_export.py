"""Log records over OTLP, beside the JSON lines on stdout, when ``OTEL_LOGS_EXPORTER`` asks for them.

``configure_log_export`` creates this process's ``LoggerProvider`` (same resource as the tracer provider, so
logs, spans and metrics share ``service.name`` and ``service.instance.id``) and puts an
``OtlpLogHandler`` (``observability/sdk/log_handler.py``) on the root logger.

The logging instrumentation and the logs SDK take about half a second to import, so this module imports
them only once logs are to be exported: a process whose ``OTEL_LOGS_EXPORTER`` is unset or ``none`` (the
default) never loads them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from observability.sdk.setup_environment import sdk_environment

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import LogRecordExporter

__all__ = ["configure_log_export", "make_log_exporter"]

_configured: dict[int, LoggerProvider | None] = {}


def make_log_exporter(env: Mapping[str, str]) -> LogRecordExporter | None:
    """The exporter named by ``OTEL_LOGS_EXPORTER`` (``otlp``, ``console`` or ``none``; ``none`` by default)."""
    name = _exporter_name(env)
    if name in ("none", ""):
        return None
    if name == "console":
        from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

        return ConsoleLogRecordExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_LOGS_EXPORTER={name!r} is not supported (use otlp, console or none)")
    from observability.sdk.span_exporters import otlp_uses_grpc

    if otlp_uses_grpc(env, "LOGS"):
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter()


def _exporter_name(env: Mapping[str, str]) -> str:
    return env.get("OTEL_LOGS_EXPORTER", "none").strip().lower()


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
    env = sdk_environment(environ)
    if env is None or (exporter is None and _exporter_name(env) in ("none", "")):
        return None
    pid = os.getpid()
    if pid in _configured:
        return _configured[pid]
    chosen = exporter if exporter is not None else make_log_exporter(env)
    if chosen is None:
        _configured[pid] = None
        return None
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    from observability.sdk.log_handler import OtlpLogHandler
    from observability.sdk.tracing_setup import process_resource

    provider = LoggerProvider(resource=process_resource(default_service_name))
    provider.add_log_record_processor(BatchLogRecordProcessor(chosen))
    set_logger_provider(provider)
    handler = OtlpLogHandler(logger_provider=provider, capture_personal_data=capture_personal_data)
    logging.getLogger().addHandler(handler)
    _configured[pid] = provider
    return provider
