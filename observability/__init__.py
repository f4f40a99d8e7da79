"""Tracing and log correlation for Dramatiq: middleware, SDK setup and logging setup.

This package knows nothing of our actors or services; everything it needs arrives as an argument.
"""

from __future__ import annotations

from dramatiq.broker import Broker

from observability.log_context import LogContext
from observability.log_export import configure_log_export
from observability.logs import add_trace_context, configure_logging
from observability.metrics import Metrics
from observability.middleware import Tracing
from observability.prometheus import PROMETHEUS_CONTENT_TYPE, prometheus_meter_provider, render_prometheus
from observability.propagation import CARRIER_KEY
from observability.tracing import configure_metrics, configure_tracing

__all__ = [
    "CARRIER_KEY",
    "PROMETHEUS_CONTENT_TYPE",
    "LogContext",
    "Metrics",
    "Tracing",
    "add_trace_context",
    "configure_log_export",
    "configure_logging",
    "configure_metrics",
    "configure_tracing",
    "install",
    "prometheus_meter_provider",
    "render_prometheus",
]


def install(broker: Broker, tracing: Tracing | None = None, *, log_context: bool = True) -> Tracing:
    """Put ``Tracing`` first and ``LogContext`` second in ``broker``'s middleware. Idempotent.

    First matters: Dramatiq runs after-hooks in reverse order, so the process span is still current
    while Retries, Pipelines and Callbacks enqueue follow-ups and while the worker logs failures.

    Args:
        broker: the broker to instrument.
        tracing: the middleware instance to use; a default ``Tracing()`` otherwise.
        log_context: also bind message fields for log lines.

    Returns:
        The ``Tracing`` middleware in place.
    """
    tracing = tracing or Tracing()
    broker.middleware[:] = [m for m in broker.middleware if not isinstance(m, (Tracing, LogContext))]
    broker.middleware.insert(0, tracing)
    if log_context:
        broker.middleware.insert(1, LogContext())
    tracing.instrument(broker)
    return tracing
