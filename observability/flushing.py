"""The one place that flushes this process's telemetry: spans, metrics and log records, before it exits.

Several exits skip the SDK's atexit handlers, which would otherwise flush: forked Dramatiq worker processes
leave through ``os._exit`` (the ``Tracing`` and ``Metrics`` middleware flush at ``after_worker_shutdown``),
uvicorn re-raises SIGTERM after its graceful shutdown (the API flushes in its lifespan), and the periodiq
scheduler stops on SIGTERM (``actors/ticks.py``). Each calls :func:`flush_telemetry`, so each flush has the
same order, the same deadline rule and the same refusal to raise.
"""

from __future__ import annotations

import logging
import time

from opentelemetry import trace
from opentelemetry._logs import get_logger_provider
from opentelemetry.metrics import get_meter_provider

__all__ = ["flush_telemetry"]

_log = logging.getLogger(__name__)


def flush_telemetry(
    timeout_millis: int = 10_000,
    *,
    spans: bool = True,
    metrics: bool = True,
    log_records: bool = True,
    tracer_provider: object | None = None,
    meter_provider: object | None = None,
) -> None:
    """Force-flush the tracer, meter and logger providers, in that order, within ``timeout_millis``.

    Log records go last, so the records logged while spans and metrics were flushed leave too. The deadline
    holds for the whole call: each provider gets what the ones before it left. A provider that cannot be
    flushed (the API's no-op ones) is skipped. Never raises: a failed flush is logged and the next one runs.

    Args:
        timeout_millis: the longest the whole call may take.
        spans: flush the tracer provider.
        metrics: flush the meter provider.
        log_records: flush the global logger provider.
        tracer_provider: the tracer provider to flush; the global one by default.
        meter_provider: the meter provider to flush; the global one by default.
    """
    deadline = time.monotonic() + timeout_millis / 1000
    if spans:
        _force_flush(tracer_provider or trace.get_tracer_provider(), deadline, "spans")
    if metrics:
        _force_flush(meter_provider or get_meter_provider(), deadline, "metrics")
    if log_records:
        _force_flush(get_logger_provider(), deadline, "log records")


def _force_flush(provider: object, deadline: float, what: str) -> None:
    try:
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush(max(0, int((deadline - time.monotonic()) * 1000)))
    except Exception:
        _log.warning("could not flush %s", what, exc_info=True)
