"""Process setup and export: the OpenTelemetry SDK, its exporters, Prometheus and logging configuration.

Everything here may load the SDK, protobuf and HTTP clients; the middleware in :mod:`observability` never
imports this package, so a project with its own SDK setup pays none of it. Each name below is imported
when first used: a worker that sets up tracing but not Prometheus or structlog's console never loads
prometheus_client or rich (several MiB and a few hundred milliseconds each).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import LogRecordExporter

    from observability.sdk.logging_setup import configure_logging
    from observability.sdk.metrics_setup import configure_metrics
    from observability.sdk.prometheus import PROMETHEUS_CONTENT_TYPE, prometheus_meter_provider, render_prometheus
    from observability.sdk.tracing_setup import configure_tracing

_HOMES: Final = {
    "PROMETHEUS_CONTENT_TYPE": "observability.sdk.prometheus",
    "configure_logging": "observability.sdk.logging_setup",
    "configure_metrics": "observability.sdk.metrics_setup",
    "configure_tracing": "observability.sdk.tracing_setup",
    "prometheus_meter_provider": "observability.sdk.prometheus",
    "render_prometheus": "observability.sdk.prometheus",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


__all__ = [
    "PROMETHEUS_CONTENT_TYPE",
    "configure_log_export",
    "configure_logging",
    "configure_metrics",
    "configure_tracing",
    "prometheus_meter_provider",
    "render_prometheus",
]


def configure_log_export(
    *,
    default_service_name: str = "tracedq",
    exporter: LogRecordExporter | None = None,
    environ: Mapping[str, str] | None = None,
    capture_personal_data: bool = False,
) -> LoggerProvider | None:
    """:func:`observability.sdk.log_export.configure_log_export`, imported only when logs are exported.

    The logging instrumentation and the logs SDK take about half a second to import; a process whose
    ``OTEL_LOGS_EXPORTER`` is unset or ``none`` (the default) never loads them.
    """
    env = os.environ if environ is None else environ
    if exporter is None and env.get("OTEL_LOGS_EXPORTER", "none").strip().lower() in ("none", ""):
        return None
    from observability.sdk import log_export

    return log_export.configure_log_export(
        default_service_name=default_service_name,
        exporter=exporter,
        environ=environ,
        capture_personal_data=capture_personal_data,
    )
