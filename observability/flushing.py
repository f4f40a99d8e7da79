"""What every middleware here does with its own failures: swallow them, say so once, and flush safely."""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["failure_reporter", "flush_telemetry", "force_flush"]


def failure_reporter(logger: logging.Logger, prefix: str) -> Callable[[str], None]:
    """A function logging a swallowed hook failure: a warning with traceback the first time, debug after.

    Call it from inside the ``except`` block, so the traceback is the one being swallowed.
    """
    reported: set[str] = set()

    def hook_failed(what: str) -> None:
        first = what not in reported
        reported.add(what)
        logger.log(logging.WARNING if first else logging.DEBUG, "%s: %s", prefix, what, exc_info=True)

    return hook_failed


def force_flush(provider: object, timeout_millis: int, logger: logging.Logger, what: str) -> None:
    """Force-flush a tracer or meter provider if it can be flushed (the API no-op ones cannot). Never raises."""
    try:
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush(timeout_millis)
    except Exception:
        logger.warning("could not flush %s", what, exc_info=True)


def flush_telemetry(timeout_millis: int = 10_000) -> None:
    """Force-flush the global tracer, meter and logger providers, in that order. Never raises.

    For processes whose exit skips atexit: uvicorn re-raises SIGTERM after its graceful shutdown, so the
    SDK's own exit handlers never run and whatever the span queue held would be lost on every deploy.
    """
    from opentelemetry import metrics, trace
    from opentelemetry._logs import get_logger_provider

    log = logging.getLogger(__name__)
    force_flush(trace.get_tracer_provider(), timeout_millis, log, "spans")
    force_flush(metrics.get_meter_provider(), timeout_millis, log, "metrics")
    force_flush(get_logger_provider(), timeout_millis, log, "log records")
