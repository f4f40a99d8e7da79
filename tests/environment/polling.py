"""Waiting for something another thread or process does: one polling loop for every test."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_until"]

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something true or ``timeout`` seconds pass; return its last result.

    A predicate returning a bool makes this "whether it held"; one returning a value (a set of pids, a response)
    hands that value back when it came.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            return result
        time.sleep(interval)
