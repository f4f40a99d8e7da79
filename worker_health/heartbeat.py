"""The worker heartbeat middleware: a heartbeat file per worker process and one HTTP endpoint per tree.

* :class:`Heartbeat` is a Dramatiq middleware. In every worker process a daemon thread rewrites
  ``<directory>/worker-<pid>.json`` every ``interval`` seconds, with the problems that keep the process from
  working (:meth:`Heartbeat.problems`: a refused queue declaration, a dead or stuck consumer or worker thread,
  a message stuck past its time limit), which fail the probe and the endpoint. On a graceful stop the file
  says ``stopping`` (so a long drain is not a liveness failure) and is removed once the worker has stopped;
  a worker that is killed or hangs leaves a file that stops getting younger. ``python -m worker_health.probe check``
  (``worker_health/probe.py``) is the probe over them.
* When the middleware is given a :class:`HealthServer`, its ``forks`` hand Dramatiq's main process a
  function to run in a fork of its own, exactly like Dramatiq's Prometheus middleware: one HTTP server per
  process tree, never one per worker process, so ``-p 8`` binds the port once. It serves
  ``/health/live`` (the probe's verdict), ``/health/ready`` (RabbitMQ, the database and at least one fresh
  heartbeat, none reporting a problem) and
  ``/metrics`` (Prometheus text). If the port is taken the fork logs an error and exits; Dramatiq's main
  process only watches its worker processes, so the workers keep running.

Not in ``worker_health.probe``: the broker module imports this one, so ``import actors`` loads it, and
``python -m`` of a module the package already imported makes runpy warn on every probe run.

Configuration arrives as arguments (the application's settings read the environment). The fork process is a
fresh import in a fork of Dramatiq's main process, which never imported the broker; the fork function
therefore lives beside the broker (``actors.broker.serve_health``), imports it and calls :func:`serve_for`,
which takes the :class:`HealthServer` from the ``Heartbeat`` middleware found there. This package never
imports the application. See ``docs/health.md``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dramatiq
import structlog
from dramatiq.common import q_name
from dramatiq.errors import ActorNotFound
from dramatiq.middleware import Middleware, TimeLimit

from worker_health.health_server import HealthServer
from worker_health.heartbeat_files import (
    DEFAULT_HEARTBEAT_DIR,
    MetricsSource,
    State,
    _process_start,
    heartbeat_path,
    metrics_path,
    remove_orphans,
    write_heartbeat,
)

__all__ = ["HealthServer", "Heartbeat", "serve_for"]

_log = structlog.get_logger(__name__)

# -- the middleware -----------------------------------------------------------------------------------------


def serve_for(broker: dramatiq.Broker) -> int:
    """Run the :class:`HealthServer` of ``broker``'s :class:`Heartbeat` (the body of a fork function)."""
    for middleware in broker.middleware:
        if isinstance(middleware, Heartbeat) and middleware.server is not None:
            return middleware.server.serve()
    _log.error("health_server_not_configured", reason="no Heartbeat middleware with a server on the broker")
    return 1


class Heartbeat(Middleware):
    """A heartbeat file per worker process, and (with ``server``) one health/metrics endpoint per tree.

    Args:
        directory: where each worker process writes ``worker-<pid>.json``; one directory per container.
        interval: seconds between beats; keep the probe's ``--max-age`` a few intervals longer.
        server: the endpoint to run in a Dramatiq fork; ``None`` for heartbeats only.
        consumer_stall: seconds a consumer may go without a consume attempt, delivery or idle tick (it ticks
            every ``worker_timeout``, 1 s, when idle) before it counts as stuck. Longer than a connection
            attempt (pika gives up after 15 s) plus Dramatiq's restart delay (3 s), so an unreachable
            RabbitMQ (readiness's business) is not reported as a stuck consumer.
        time_limit_grace: seconds past an actor's time limit after which a message still running counts as
            stuck: Dramatiq's TimeLimit interrupts Python code within about a second, but not a thread blocked
            in a system call.
        fork: the importable, argument-less function Dramatiq runs in that fork (required with ``server``).
            It must find this middleware on the broker the worker uses: a function beside the broker module
            that imports it and returns :func:`serve_for` of it (``actors.broker.serve_health``).
    """

    def __init__(
        self,
        directory: Path | str = DEFAULT_HEARTBEAT_DIR,
        *,
        interval: float = 5.0,
        server: HealthServer | None = None,
        fork: Callable[[], int] | None = None,
        metrics_snapshot: MetricsSource | None = None,
        consumer_stall: float = 60.0,
        time_limit_grace: float = 30.0,
    ) -> None:
        if server is not None and fork is None:
            raise ValueError("a Heartbeat with a server needs fork=: the function that serves it in Dramatiq's fork")
        if interval <= 0:
            raise ValueError(f"heartbeat interval must be positive, not {interval!r}")
        if consumer_stall <= 0 or time_limit_grace < 0:
            raise ValueError(
                f"consumer_stall must be positive and time_limit_grace not negative, not "
                f"{consumer_stall!r} and {time_limit_grace!r}"
            )
        self.consumer_stall = consumer_stall
        self.time_limit_grace = time_limit_grace
        # worker thread ident -> (monotonic start, message): one dict store per message, read by the beat thread
        self._running: dict[int, tuple[float, Any]] = {}
        self._default_time_limit: float | None = None
        self._reported: list[str] = []
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
        return [self.fork] if self.server is not None and self.fork is not None else []

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._worker = worker
        time_limits = [m for m in broker.middleware if isinstance(m, TimeLimit)]
        self._default_time_limit = time_limits[0].time_limit if time_limits else None
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

    # The hot path: one dict store per message and one pop, no lock (each worker thread writes its own key).
    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._running[threading.get_ident()] = (time.monotonic(), message)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        self._running.pop(threading.get_ident(), None)

    after_skip_message = after_process_message

    def threads_alive(self) -> bool:
        """Whether every worker and consumer thread of this process's worker is alive."""
        worker = self._worker
        if worker is None:
            return False
        threads = [*worker.workers, *worker.consumers.values()]
        return bool(worker.workers) and all(thread.is_alive() for thread in threads)

    def problems(self, now: float | None = None) -> list[str]:
        """Why this worker process is up but not working, one line each naming the queue, actor or message."""
        return [line for _, line in self._problems(now)]

    def _problems(self, now: float | None = None) -> list[tuple[str, str]]:
        """(what, line) per problem: ``what`` stays the same while the problem lasts (the line's seconds grow).

        A dead consumer or worker thread; a queue RabbitMQ refuses to declare; a consumer that has not ticked for
        ``consumer_stall`` seconds (unless paused); a message running past its time limit + ``time_limit_grace``.
        Message arguments are never named (they may hold personal data).
        """
        worker = self._worker
        if worker is None:
            return []
        now = time.monotonic() if now is None else now
        activity = getattr(worker.broker, "consumer_activity", None)
        ticks: dict[str, float] = activity.ticks.copy() if activity is not None else {}
        refused: dict[str, str] = activity.declaration_failures.copy() if activity is not None else {}
        found = [
            (f"refused {name}", f"queue {name!r} cannot be consumed: {reason}")
            for name, reason in sorted(refused.items())
        ]
        for name, thread in sorted(worker.consumers.copy().items()):
            if not thread.is_alive():
                found.append((f"dead {name}", f"consumer of queue {name!r} is dead: its thread has exited"))
            elif q_name(name) not in refused and not thread.paused and name in ticks:
                idle = now - ticks[name]
                if idle > self.consumer_stall:
                    line = (
                        f"consumer of queue {name!r} is stuck: no delivery or idle tick for {idle:.1f}s "
                        f"(max {self.consumer_stall:g}s)"
                    )
                    found.append((f"stuck {name}", line))
        dead_workers = sum(1 for thread in worker.workers if not thread.is_alive())
        if dead_workers:
            found.append((f"dead workers {dead_workers}", f"{dead_workers} worker thread(s) dead"))
        for started, message in self._running.copy().values():
            limit = self._time_limit(worker.broker, message)
            running = now - started
            if limit is not None and running > limit + self.time_limit_grace:
                line = (
                    f"worker thread stuck on message {message.message_id} of actor {message.actor_name!r} "
                    f"(queue {message.queue_name!r}): running for {running:.1f}s, time limit {limit:g}s "
                    f"+ grace {self.time_limit_grace:g}s"
                )
                found.append((f"stuck message {message.message_id}", line))
        return found

    def _time_limit(self, broker: dramatiq.Broker, message: Any) -> float | None:
        """The message's time limit in seconds as Dramatiq's TimeLimit computes it; None when none applies."""
        if self._default_time_limit is None:
            return None
        try:
            actor = broker.get_actor(message.actor_name)
        except ActorNotFound:
            return None
        limit_ms = message.options.get("time_limit") or actor.options.get("time_limit", self._default_time_limit)
        return float(limit_ms) / 1000 if limit_ms else None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._beat("running")

    def _beat(self, state: State) -> None:
        problems: list[str] = []
        if state == "running":
            try:
                found = self._problems()
            except Exception as exc:  # a bug here must not stop the beat; say so in the file
                found = [("check failed", f"health check failed: {type(exc).__name__}: {exc}")]
            problems = [line for _, line in found]
            what = [key for key, _ in found]
            if what != self._reported:  # log changes, not every beat
                if problems:
                    _log.warning("worker_unhealthy", problems=problems)
                else:
                    _log.info("worker_healthy_again")
                self._reported = what
        try:
            write_heartbeat(
                self.directory,
                pid=os.getpid(),
                main_pid=self._main_pid,
                main_start=self._main_start,
                state=state,
                problems=problems,
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
