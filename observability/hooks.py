"""What every middleware here does with its own failures: swallow them, say so once, and flush safely."""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["failure_reporter", "force_flush"]


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
