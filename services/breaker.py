"""A circuit breaker: after repeated failures stop calling a dependency for a while, then try once.

While open, callers get :class:`CircuitOpen` at once (with how long to wait) instead of hammering a
server that keeps failing; the email actors turn that into a delayed re-send that does not burn retries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import TypeVar

from services.errors import EmailUnavailable

__all__ = ["CircuitBreaker", "CircuitOpen"]

T = TypeVar("T")


class CircuitOpen(EmailUnavailable):
    """The circuit is open: do not call now; ``retry_after`` seconds until the next trial call."""

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"circuit {name!r} is open; retry in {retry_after:.1f}s")
        self.retry_after = retry_after


@dataclass(eq=False)
class CircuitBreaker:
    """Closed -> open after ``failure_threshold`` consecutive failures -> half-open after ``reset_timeout``.

    Args:
        name: what is protected (shows in errors and metrics).
        failure_threshold: consecutive failures that open the circuit.
        reset_timeout: seconds the circuit stays open before one trial call.
        counts_as_failure: which exceptions count (others pass through without changing state).
        clock: monotonic seconds, passed in for tests.
    """

    name: str
    _: KW_ONLY
    failure_threshold: int = 5
    reset_timeout: float = 30.0
    counts_as_failure: tuple[type[BaseException], ...] = (EmailUnavailable,)
    clock: Callable[[], float] = time.monotonic
    # The state, shared by the threads of a process and guarded by the lock.
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _failures: int = field(default=0, init=False)
    _opened_at: float | None = field(default=None, init=False)
    _trial_running: bool = field(default=False, init=False)

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        with self._lock:
            return self._state_locked()

    def _state_locked(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self._opened_at >= self.reset_timeout else "open"

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` through the breaker.

        Raises:
            CircuitOpen: the circuit is open (or a trial call is already running).
        """
        with self._lock:
            state = self._state_locked()
            if state == "open" or (state == "half_open" and self._trial_running):
                assert self._opened_at is not None
                remaining = max(self.reset_timeout - (self.clock() - self._opened_at), 0.0)
                raise CircuitOpen(self.name, remaining or self.reset_timeout)
            self._trial_running = state == "half_open"
        try:
            result = fn()
        except self.counts_as_failure:
            with self._lock:
                self._trial_running = False
                self._failures += 1
                if self._opened_at is not None or self._failures >= self.failure_threshold:
                    self._opened_at = self.clock()
            raise
        with self._lock:
            self._trial_running = False
            self._failures = 0
            self._opened_at = None
        return result
