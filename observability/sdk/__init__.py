"""Process setup and export: the OpenTelemetry SDK, its exporters, Prometheus and logging configuration.

Everything here may load the SDK, protobuf and HTTP clients; the middleware in :mod:`observability` never
imports this package, so a project with its own SDK setup pays none of it. Each name below is imported
when first used: a worker that sets up tracing but not Prometheus or structlog's console never loads
prometheus_client or rich (several MiB and a few hundred milliseconds each).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from observability.sdk.log_export import configure_log_export
    from observability.sdk.logging_setup import configure_logging
    from observability.sdk.metrics_setup import configure_metrics
    from observability.sdk.prometheus import PROMETHEUS_CONTENT_TYPE, prometheus_meter_provider, render_prometheus
    from observability.sdk.tracing_setup import configure_tracing

_HOMES: Final = {
    "PROMETHEUS_CONTENT_TYPE": "observability.sdk.prometheus",
    "configure_log_export": "observability.sdk.log_export",
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
