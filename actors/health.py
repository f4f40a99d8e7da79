"""Worker health without a web framework: a heartbeat file per worker process and one HTTP endpoint per tree.

* :class:`Heartbeat` is a Dramatiq middleware. In every worker process a daemon thread rewrites
  ``<directory>/worker-<pid>.json`` every ``interval`` seconds while the process's worker and consumer
  threads are alive. On a graceful stop the file says ``stopping`` (so a long drain is not a liveness
  failure) and is removed once the worker has stopped; a worker that is killed or hangs leaves a file that
  stops getting younger.
* ``python -m actors.health check --dir DIR --max-age 30`` is the Kubernetes exec liveness probe: exit 0
  when at least ``--min-workers`` (default 1) heartbeats are fresh and **every** running heartbeat is
  fresh, 1 otherwise (one hung or killed worker process fails the probe).
* When the middleware is given a :class:`HealthServer`, its ``forks`` hand Dramatiq's main process a
  function to run in a fork of its own, exactly like Dramatiq's Prometheus middleware: one HTTP server per
  process tree, never one per worker process, so ``-p 8`` binds the port once. It serves
  ``/health/live``, ``/health/ready`` (RabbitMQ, the database and at least one fresh heartbeat) and
  ``/metrics`` (Prometheus text). If the port is taken the fork logs an error and exits; Dramatiq's main
  process only watches its worker processes, so the workers keep running.

Configuration arrives as arguments (``actors.settings`` is the only reader of the environment). The fork
process is a fresh import of this module in a fork of Dramatiq's main process, which never imported the
broker; the fork function therefore imports the broker module and takes the :class:`HealthServer` from the
``Heartbeat`` middleware found there (:func:`serve_health` for ``actors.broker``; see :func:`serve_for`).
See ``docs/health.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import dramatiq
import structlog
from dramatiq.middleware import Middleware

__all__ = [
    "DEFAULT_HEARTBEAT_DIR",
    "HealthServer",
    "Heartbeat",
    "HeartbeatRecord",
    "MetricsSource",
    "Verdict",
    "assess",
    "main",
    "metrics_path",
    "read_heartbeats",
    "serve_for",
    "serve_health",
]

_log = structlog.get_logger(__name__)

#: Where heartbeats go unless told otherwise: the container's own /tmp, which does not outlive it.
DEFAULT_HEARTBEAT_DIR = Path(tempfile.gettempdir()) / "tracedq-heartbeats"
_PREFIX = "worker-"
_SUFFIX = ".json"

State = Literal["running", "stopping"]

#: A source of Prometheus exposition text, called in the fork process on each ``GET /metrics``.
MetricsSource = Callable[[], bytes]


# -- heartbeat files ----------------------------------------------------------------------------------


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), ``None`` when unknown or gone.

    A pid plus its start time names one process for good: pids are reused, start times are not.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (the command) may hold spaces and parentheses: split after its closing parenthesis.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None  # field 22, starttime


def _process_alive(pid: int, start: str | None) -> bool:
    """Whether the process ``pid`` that started at ``start`` still runs."""
    current = _process_start(pid)
    if current is not None:
        return start is None or current == start
    if Path("/proc").is_dir():
        return False
    try:  # no /proc (macOS): the pid alone
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class HeartbeatRecord:
    """One worker process's heartbeat file as read at ``now``."""

    path: Path
    pid: int
    main_pid: int
    main_start: str | None
    state: State
    age: float

    def fresh(self, max_age: float) -> bool:
        """Running and rewritten within ``max_age`` seconds."""
        return self.state == "running" and self.age <= max_age


def metrics_path(directory: Path, pid: int) -> Path:
    """Where worker process ``pid`` writes its metrics page."""
    return Path(directory) / f"metrics-{pid}.prom"


def heartbeat_path(directory: Path, pid: int) -> Path:
    """The heartbeat file of worker process ``pid``."""
    return directory / f"{_PREFIX}{pid}{_SUFFIX}"


def write_heartbeat(directory: Path, *, pid: int, main_pid: int, main_start: str | None, state: State) -> Path:
    """Write (atomically: temp file then rename) the heartbeat of ``pid``; its mtime is the beat."""
    directory.mkdir(parents=True, exist_ok=True)
    path = heartbeat_path(directory, pid)
    payload = {"pid": pid, "main_pid": main_pid, "main_start": main_start, "state": state, "at": time.time()}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)
    return path


def read_heartbeats(directory: Path, *, now: float | None = None) -> list[HeartbeatRecord]:
    """Every heartbeat file in ``directory`` (none when it does not exist), oldest first.

    Age is ``now`` minus the file's mtime. A file that vanishes or is unreadable mid-read is skipped.
    """
    now = time.time() if now is None else now
    records = []
    try:
        paths = sorted(directory.glob(f"{_PREFIX}*{_SUFFIX}"))
    except OSError:
        return []
    for path in paths:
        try:
            mtime = path.stat().st_mtime
            data = json.loads(path.read_text())
            state: State = "stopping" if data.get("state") == "stopping" else "running"
            records.append(
                HeartbeatRecord(
                    path=path,
                    pid=int(data["pid"]),
                    main_pid=int(data["main_pid"]),
                    main_start=data.get("main_start"),
                    state=state,
                    age=max(0.0, now - mtime),
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(records, key=lambda record: -record.age)


def remove_orphans(directory: Path, *, main_pid: int, main_start: str | None) -> list[int]:
    """Delete heartbeats left by process trees that are gone (a restarted container reusing ``directory``).

    Files of this tree (same main process) stay, even stale ones: a sibling killed before this worker
    booted must still fail the probe. Returns the pids whose files were removed.
    """
    removed = []
    for record in read_heartbeats(directory):
        if record.main_pid == main_pid and record.main_start == main_start:
            continue
        if _process_alive(record.main_pid, record.main_start):
            continue  # another live tree sharing the directory
        with contextlib.suppress(FileNotFoundError):
            record.path.unlink()
            removed.append(record.pid)
    return removed


@dataclass(frozen=True)
class Verdict:
    """The liveness verdict over a set of heartbeats."""

    ok: bool
    fresh: list[HeartbeatRecord]
    stale: list[HeartbeatRecord]
    stopping: list[HeartbeatRecord]
    reasons: list[str]


def assess(records: Sequence[HeartbeatRecord], *, max_age: float, min_workers: int = 1) -> Verdict:
    """Live when at least ``min_workers`` running heartbeats are fresh and none is stale.

    ``stopping`` heartbeats (a graceful shutdown in progress) are neither: they never fail the check.
    """
    fresh = [record for record in records if record.fresh(max_age)]
    stale = [record for record in records if record.state == "running" and not record.fresh(max_age)]
    stopping = [record for record in records if record.state == "stopping"]
    reasons = [f"worker {record.pid}: heartbeat {record.age:.1f}s old (max {max_age:g}s)" for record in stale]
    if len(fresh) < min_workers:
        reasons.append(f"{len(fresh)} fresh worker heartbeat(s), need at least {min_workers}")
    return Verdict(ok=not reasons, fresh=fresh, stale=stale, stopping=stopping, reasons=reasons)


# -- the HTTP endpoint (runs in the fork) ----------------------------------------------------------------


def _check_broker(url: str, timeout: float) -> str:
    import pika

    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.retry_delay = 0
    parameters.socket_timeout = timeout
    parameters.stack_timeout = timeout
    parameters.blocked_connection_timeout = timeout
    try:
        pika.BlockingConnection(parameters).close()
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"[:300]
    return "ok"


@dataclass
class HealthServer:
    """What the fork serves, and where.

    ``metrics_sources`` is the seam for more exposition text on ``/metrics`` (say the OpenTelemetry
    messaging metrics): each is called in the fork process per request and its bytes are appended after
    the default registry's and the heartbeat gauge. Family names must not repeat across sources.
    """

    heartbeat_dir: Path
    broker_url: str
    database_url: str
    port: int = 9200
    host: str = "0.0.0.0"
    max_age: float = 30.0
    check_timeout: float = 3.0
    metrics_sources: tuple[MetricsSource, ...] = ()
    _engine: Any = field(default=None, init=False, repr=False)

    def heartbeats(self) -> list[HeartbeatRecord]:
        """This tree's heartbeats: the fork's parent is the tree's main process, as for every worker."""
        main_pid = os.getppid()
        main_start = _process_start(main_pid)
        return [
            record
            for record in read_heartbeats(self.heartbeat_dir)
            if record.main_pid == main_pid and record.main_start == main_start
        ]

    def check_database(self) -> str:
        """``ok`` when the database answers ``SELECT 1``, else the error."""
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        try:
            if self._engine is None:
                connect_args: dict[str, Any] = {}
                if self.database_url.startswith("postgresql"):
                    connect_args["connect_timeout"] = max(1, int(self.check_timeout))
                elif self.database_url.startswith("sqlite"):
                    connect_args["timeout"] = self.check_timeout
                self._engine = create_engine(self.database_url, poolclass=NullPool, connect_args=connect_args)
            with self._engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:
            return f"error: {type(exc).__name__}: {exc}"[:300]
        return "ok"

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """HTTP status and body of ``/health/ready``."""
        workers = sum(1 for record in self.heartbeats() if record.fresh(self.max_age))
        body: dict[str, Any] = {
            "broker": _check_broker(self.broker_url, self.check_timeout),
            "database": self.check_database(),
            "workers": workers,
        }
        ready = body["broker"] == "ok" and body["database"] == "ok" and workers > 0
        return (200 if ready else 503), body

    def heartbeat_exposition(self) -> bytes:
        """``tracedq_worker_heartbeat_age_seconds{pid, state}`` for each of this tree's worker processes."""
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.core import GaugeMetricFamily
        from prometheus_client.registry import Collector

        records = self.heartbeats()

        class _Ages(Collector):
            def collect(self) -> Iterator[GaugeMetricFamily]:
                gauge = GaugeMetricFamily(
                    "tracedq_worker_heartbeat_age_seconds",
                    "Seconds since the worker process last wrote its heartbeat.",
                    labels=["pid", "state"],
                )
                for record in records:
                    gauge.add_metric([str(record.pid), record.state], record.age)
                yield gauge

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Ages())
        return generate_latest(registry)

    def worker_metrics(self) -> bytes:
        """The messaging metrics of this tree's live worker processes, one page, labelled ``worker_pid``."""
        from observability.prometheus import merge_expositions

        snapshots: dict[str, bytes] = {}
        for record in self.heartbeats():
            if record.fresh(self.max_age):
                with contextlib.suppress(OSError):
                    snapshots[str(record.pid)] = metrics_path(self.heartbeat_dir, record.pid).read_bytes()
        return merge_expositions(snapshots, label="worker_pid") if snapshots else b""

    def metrics(self) -> bytes:
        """``/metrics``: the heartbeat gauge, the workers' metrics, then every ``metrics_sources``."""
        sources: Iterable[MetricsSource] = (self.heartbeat_exposition, self.worker_metrics)
        return b"".join(source() for source in (*sources, *self.metrics_sources))

    def serve(self) -> int:
        """Serve until the process is signalled (Dramatiq's fork SIGTERM handler exits). 1 when the bind fails."""
        try:
            httpd = _Server((self.host, self.port), _Handler)
        except OSError as exc:
            _log.error("health_server_bind_failed", host=self.host, port=self.port, error=str(exc))
            return 1
        httpd.health = self
        _log.info("health_server_listening", host=self.host, port=httpd.server_address[1], pid=os.getpid())
        try:
            httpd.serve_forever(poll_interval=0.5)
        finally:
            httpd.server_close()
        return 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    health: HealthServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        health = self.server.health
        path = self.path.split("?", 1)[0]
        if path == "/health/live":
            self._send(200, "application/json", b'{"status": "ok"}')
        elif path == "/health/ready":
            status, body = health.readiness()
            self._send(status, "application/json", json.dumps(body).encode())
        elif path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST

            self._send(200, CONTENT_TYPE_LATEST, health.metrics())
        else:
            self._send(404, "application/json", b'{"error": "not found"}')

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # probes every few seconds would drown the worker logs


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


# -- the probe CLI --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m actors.health check [--dir DIR] [--max-age S] [--min-workers N]``; 0 live, 1 not."""
    parser = argparse.ArgumentParser(prog="python -m actors.health", description="Worker heartbeat check.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="exit 0 when the worker heartbeats are fresh (a liveness probe)")
    check.add_argument("--dir", type=Path, default=DEFAULT_HEARTBEAT_DIR, help="heartbeat directory")
    check.add_argument("--max-age", type=float, default=30.0, help="seconds a heartbeat may be old (30)")
    check.add_argument("--min-workers", type=int, default=1, help="fresh heartbeats required (1)")
    args = parser.parse_args(argv)

    verdict = assess(read_heartbeats(args.dir), max_age=args.max_age, min_workers=args.min_workers)
    for record in verdict.fresh:
        print(f"worker {record.pid}: ok ({record.age:.1f}s)")
    for record in verdict.stopping:
        print(f"worker {record.pid}: stopping ({record.age:.1f}s)")
    for reason in verdict.reasons:
        print(f"FAIL {reason}", file=sys.stderr)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
