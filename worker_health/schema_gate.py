"""A worker process consumes nothing until its database is at the schema revision the code needs.

Without it, a worker started before ``python -m actors.db upgrade`` takes every message, fails each on
``no such table`` and retries it for a quarter of an hour. With it, each consumer thread is paused as it
boots (Dramatiq's own ``ConsumerThread.pause``: the thread sleeps in its loop and never opens a RabbitMQ
consumer, so the messages stay *ready* in their queues, none prefetched or unacked). A background thread
reads the revision (:func:`services.schema.schema_status`, the readiness probes' function) every
``interval`` seconds, logs once what it waits for, and resumes the consumers once the database is at head.

The first check runs before the worker boots, bounded by the database's connect timeout, so a database
already at head costs no pause at all; a database that is down or behind never blocks the boot. A worker
stopped while waiting just stops.
"""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import Middleware
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool

from services.schema import schema_status

__all__ = ["SchemaGate"]

_log = structlog.get_logger(__name__)


class SchemaGate(Middleware):
    """Pause every consumer of a worker process until the database at ``database_url`` is at head.

    Args:
        database_url: the SQLAlchemy URL the actors use.
        interval: seconds between two reads of the revision while waiting.
        connect_timeout: seconds one read may wait for the database.
    """

    def __init__(self, database_url: str, *, interval: float = 2.0, connect_timeout: float = 3.0) -> None:
        self.database_url = database_url
        self.interval = interval
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._open = False
        self._paused: list[Any] = []
        self._stopped = threading.Event()
        self._last_reason: str | None = None

    @property
    def open(self) -> bool:
        """Whether consumers run (the database was seen at head)."""
        return self._open

    def _engine(self) -> Engine:
        connect_args: dict[str, Any] = {}
        if self.database_url.startswith("postgresql"):
            connect_args["connect_timeout"] = max(1, int(self.connect_timeout))
        elif self.database_url.startswith("sqlite"):
            connect_args["timeout"] = self.connect_timeout
        return create_engine(self.database_url, poolclass=NullPool, connect_args=connect_args)

    def _check(self, engine: Engine) -> bool:
        """Read the revision once; open the gate at head, else log the reason when it changed."""
        try:
            status = schema_status(engine)
            reason = None if not status.behind else status.describe()
        except Exception as exc:
            reason = f"database unreachable: {type(exc).__name__}: {exc}"[:300]
        if reason is None:
            self._release()
            return True
        if reason != self._last_reason:
            self._last_reason = reason
            _log.warning(
                "worker_waiting_for_schema",
                reason=reason,
                remedy="python -m actors.db upgrade",
                note="consumers paused; messages stay in RabbitMQ",
            )
        return False

    def _release(self) -> None:
        with self._lock:
            if self._open:
                return
            self._open = True
            paused, self._paused = self._paused, []
        for thread in paused:
            thread.resume()
        if self._last_reason is not None:
            _log.info("worker_schema_ready", consumers_resumed=len(paused))

    def _wait(self, engine: Engine) -> None:
        try:
            while not self._stopped.wait(self.interval):
                if self._check(engine):
                    return
        finally:
            engine.dispose()

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        engine = self._engine()
        if self._check(engine):
            engine.dispose()
            return
        threading.Thread(target=self._wait, args=(engine,), name="schema-gate", daemon=True).start()

    def after_consumer_thread_boot(self, broker: dramatiq.Broker, thread: Any) -> None:
        # Runs in the consumer thread before its loop: a paused thread sleeps and opens no RabbitMQ consumer.
        with self._lock:
            if not self._open:
                thread.pause()
                self._paused.append(thread)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stopped.set()
