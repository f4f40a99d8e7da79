"""What every middleware here does with its own failures: swallow them and say so once.

A tracing or metrics bug must never lose a message, so hooks catch their own errors; logging each one at
warning level would flood the log at message rate, so the first of a kind warns with its traceback and the
rest go to debug.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["failure_reporter"]


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
