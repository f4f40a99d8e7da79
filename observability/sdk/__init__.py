"""Process setup and export: the OpenTelemetry SDK, its exporters, Prometheus and logging configuration.

Everything here may load the SDK, protobuf and HTTP clients; the middleware in :mod:`observability` never
imports this package, so a project with its own SDK setup pays none of it.
"""

from __future__ import annotations

from observability.sdk.log_export import configure_log_export
from observability.sdk.logging_setup import configure_logging
from observability.sdk.prometheus import PROMETHEUS_CONTENT_TYPE, prometheus_meter_provider, render_prometheus
from observability.sdk.tracing import configure_metrics, configure_tracing

__all__ = [
    "PROMETHEUS_CONTENT_TYPE",
    "configure_log_export",
    "configure_logging",
    "configure_metrics",
    "configure_tracing",
    "prometheus_meter_provider",
    "render_prometheus",
]
