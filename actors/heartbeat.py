"""The worker heartbeat middleware: a heartbeat file per worker process and one HTTP endpoint per tree.

* :class:`Heartbeat` is a Dramatiq middleware. In every worker process a daemon thread rewrites
  ``<directory>/worker-<pid>.json`` every ``interval`` seconds while the process's worker and consumer
  threads are alive. On a graceful stop the file says ``stopping`` (so a long drain is not a liveness
  failure) and is removed once the worker has stopped; a worker that is killed or hangs leaves a file that
  stops getting younger. ``python -m actors.health check`` (``actors/health.py``) is the probe over them.
* When the middleware is given a :class:`HealthServer`, its ``forks`` hand Dramatiq's main process a
  function to run in a fork of its own, exactly like Dramatiq's Prometheus middleware: one HTTP server per
  process tree, never one per worker process, so ``-p 8`` binds the port once. It serves
  ``/health/live``, ``/health/ready`` (RabbitMQ, the database and at least one fresh heartbeat) and
  ``/metrics`` (Prometheus text). If the port is taken the fork logs an error and exits; Dramatiq's main
  process only watches its worker processes, so the workers keep running.

Not in ``actors.health``: ``actors.broker`` imports this module, so ``import actors`` loads it, and
``python -m`` of a module the package already imported makes runpy warn on every probe run.

Configuration arrives as arguments (``actors.settings`` is the only reader of the environment). The fork
process is a fresh import of this module in a fork of Dramatiq's main process, which never imported the
broker; the fork function therefore imports the broker module and takes the :class:`HealthServer` from the
``Heartbeat`` middleware found there (:func:`serve_health` for ``actors.broker``; see :func:`serve_for`).
See ``docs/health.md``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import dramatiq
import structlog
from dramatiq.middleware import Middleware

from actors.health_server import HealthServer
from actors.heartbeat_files import (
    DEFAULT_HEARTBEAT_DIR,
    MetricsSource,
    State,
    _process_start,
    heartbeat_path,
    metrics_path,
    remove_orphans,
    write_heartbeat,
)

__all__ = ["HealthServer", "Heartbeat", "serve_for", "serve_health"]

_log = structlog.get_logger(__name__)

# -- the middleware -----------------------------------------------------------------------------------------


def serve_for(broker: dramatiq.Broker) -> int:
    """Run the :class:`HealthServer` of ``broker``'s :class:`Heartbeat` (the body of a fork function)."""
    for middleware in broker.middleware:
        if isinstance(middleware, Heartbeat) and middleware.server is not None:
            return middleware.server.serve()
    _log.error("health_server_not_configured", reason="no Heartbeat middleware with a server on the broker")
    return 1


def serve_health() -> int:
    """Dramatiq fork function for ``actors.broker``: the default ``Heartbeat(fork=...)``."""
    from actors.broker import broker

    return serve_for(broker)


class Heartbeat(Middleware):
    """A heartbeat file per worker process, and (with ``server``) one health/metrics endpoint per tree.

    Args:
        directory: where each worker process writes ``worker-<pid>.json``; one directory per container.
        interval: seconds between beats; keep the probe's ``--max-age`` a few intervals longer.
        server: the endpoint to run in a Dramatiq fork; ``None`` for heartbeats only.
        fork: the importable, argument-less function Dramatiq runs in that fork. It must find this
            middleware on the broker the worker uses: :func:`serve_health` does for ``actors.broker``; a
            different broker module passes its own function calling :func:`serve_for`.
    """

    def __init__(
        self,
        directory: Path | str = DEFAULT_HEARTBEAT_DIR,
        *,
        interval: float = 5.0,
        server: HealthServer | None = None,
        fork: Callable[[], int] = serve_health,
        metrics_snapshot: MetricsSource | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"heartbeat interval must be positive, not {interval!r}")
        self.directory = Path(directory)
        self.interval = interval
        self.server = server
        self.fork = fork
        # Each worker process's own metrics page, written beside its heartbeat for the tree's endpoint.
        self.metrics_snapshot = metrics_snapshot
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker: dramatiq.Worker | None = None
        self._main_pid = 0
        self._main_start: str | None = None

    @property
    def forks(self) -> list[Callable[[], int]]:
        return [self.fork] if self.server is not None else []

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._worker = worker
        self._main_pid = os.getppid()
        self._main_start = _process_start(self._main_pid)
        removed = remove_orphans(self.directory, main_pid=self._main_pid, main_start=self._main_start)
        if removed:
            _log.info("heartbeat_orphans_removed", pids=removed)
        self._beat("running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 1)
            self._thread = None
        self._beat("stopping")

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        with contextlib.suppress(FileNotFoundError):
            heartbeat_path(self.directory, os.getpid()).unlink()
        with contextlib.suppress(FileNotFoundError):
            metrics_path(self.directory, os.getpid()).unlink()

    def threads_alive(self) -> bool:
        """Whether every worker and consumer thread of this process's worker is alive."""
        worker = self._worker
        if worker is None:
            return False
        threads = [*worker.workers, *worker.consumers.values()]
        return bool(worker.workers) and all(thread.is_alive() for thread in threads)

    def _run(self) -> None:
        warned = False
        while not self._stop.wait(self.interval):
            if self.threads_alive():
                self._beat("running")
                warned = False
            elif not warned:
                _log.warning("heartbeat_withheld", reason="a worker or consumer thread is dead")
                warned = True

    def _beat(self, state: State) -> None:
        try:
            write_heartbeat(
                self.directory, pid=os.getpid(), main_pid=self._main_pid, main_start=self._main_start, state=state
            )
        except OSError as exc:
            _log.warning("heartbeat_write_failed", path=str(self.directory), error=str(exc))
            return
        if self.metrics_snapshot is not None and state == "running":
            try:
                target = metrics_path(self.directory, os.getpid())
                scratch = target.with_suffix(".tmp")
                scratch.write_bytes(self.metrics_snapshot())
                scratch.replace(target)  # atomic: the endpoint never reads half a page
            except Exception as exc:
                _log.warning("metrics_snapshot_failed", error=str(exc))
