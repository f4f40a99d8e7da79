"""Dramatiq's ``AsyncIO`` middleware with an event-loop thread that cannot keep a stopped worker process alive.

Dramatiq starts the loop thread non-daemon and stops it in ``after_worker_shutdown``. A worker process that gets
a second SIGTERM while it stops (its tree stopping because a sibling died, then the operator's own SIGTERM)
exits at once from Dramatiq's signal handler, skipping that hook, and the interpreter then waits for the loop
thread forever: the tree never exits (seen in tests/integration/test_worker_health.py's SIGKILL test). As a
daemon the thread ends with the process; async actors still run on it exactly as before.
"""

from __future__ import annotations

from typing import Any

from dramatiq.asyncio import EventLoopThread, set_event_loop_thread
from dramatiq.middleware import AsyncIO

__all__ = ["DaemonAsyncIO"]


class DaemonAsyncIO(AsyncIO):
    """``AsyncIO`` whose event-loop thread is a daemon thread."""

    def before_worker_boot(self, broker: Any, worker: Any) -> None:
        thread = EventLoopThread(self.logger)
        thread.daemon = True
        thread.start(timeout=1.0)
        set_event_loop_thread(thread)
