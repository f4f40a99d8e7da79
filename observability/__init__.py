"""Tracing, metrics and log correlation for any Dramatiq broker: the core.

The core imports only dramatiq, the OpenTelemetry API and (when its log middleware is used) structlog, so
another Dramatiq project can install it beside an SDK setup of its own. Process setup and export (the
OpenTelemetry SDK, exporters, Prometheus, logging configuration) live in :mod:`observability.sdk`.

This package knows nothing of our actors or services; everything it needs arrives as an argument.
"""

from __future__ import annotations

from dramatiq.broker import Broker

from observability.flushing import flush_telemetry
from observability.log_context import LogContext, add_trace_context
from observability.metrics import Metrics
from observability.propagation import CARRIER_KEY
from observability.tracing import Tracing

__all__ = [
    "CARRIER_KEY",
    "LogContext",
    "Metrics",
    "Tracing",
    "add_trace_context",
    "flush_telemetry",
    "install",
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
    for replaced in [m for m in broker.middleware if isinstance(m, Tracing) and m is not tracing]:
        replaced.uninstrument(broker)
    broker.middleware[:] = [m for m in broker.middleware if not isinstance(m, (Tracing, LogContext))]
    broker.middleware.insert(0, tracing)
    if log_context:
        broker.middleware.insert(1, LogContext())
    tracing.instrument(broker)
    return tracing
