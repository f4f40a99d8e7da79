"""The worker tree's HTTP endpoint (stdlib ``http.server``), run in one Dramatiq fork per process tree."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import structlog

from worker_health.heartbeat_files import (
    HeartbeatRecord,
    MetricsSource,
    _process_start,
    assess,
    metrics_path,
    problem_lines,
    read_heartbeats,
)
from worker_health.readiness import broker_reachable, database_engine, failure_text

__all__ = ["HealthServer"]

_log = structlog.get_logger(__name__)

# -- the HTTP endpoint (runs in the fork) ----------------------------------------------------------------


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

    def check_broker(self) -> str:
        """``ok`` when RabbitMQ accepts a connection within ``check_timeout``; else the error."""
        try:
            broker_reachable(self.broker_url, self.check_timeout)
        except Exception as exc:
            return "error: " + failure_text(exc)
        return "ok"

    def check_database(self) -> str:
        """``ok`` when the database answers at the schema revision the code needs; else the error, or
        ``schema behind (at X, code needs Y)`` until ``python -m actors.db upgrade`` has run."""
        from services.schema import schema_status

        try:
            if self._engine is None:
                self._engine = database_engine(self.database_url, self.check_timeout)
            return schema_status(self._engine).describe()
        except Exception as exc:
            return "error: " + failure_text(exc)

    def liveness(self) -> tuple[int, dict[str, Any]]:
        """HTTP status and body of ``/health/live``: the verdict of ``python -m worker_health.probe check`` here."""
        verdict = assess(self.heartbeats(), max_age=self.max_age)
        if verdict.ok:
            return 200, {"status": "ok"}
        return 503, {"status": "fail", "reasons": verdict.reasons}

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """HTTP status and body of ``/health/ready``; ``problems`` only when a fresh worker reports one."""
        fresh = [record for record in self.heartbeats() if record.fresh(self.max_age)]
        body: dict[str, Any] = {
            "broker": self.check_broker(),
            "database": self.check_database(),
            "workers": len(fresh),
        }
        problems = problem_lines(fresh)
        if problems:
            body["problems"] = problems
        ready = body["broker"] == "ok" and body["database"] == "ok" and bool(fresh) and not problems
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
        from observability.sdk.prometheus import merge_expositions

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
        status, content_type, body = self._answer(self.path.split("?", 1)[0])
        self.send_response(status)
        for name, value in (("Content-Type", content_type), ("Content-Length", str(len(body)))):
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _answer(self, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body for ``path``."""
        health = self.server.health
        if path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST

            return 200, CONTENT_TYPE_LATEST, health.metrics()
        verdicts = {"/health/live": health.liveness, "/health/ready": health.readiness}
        if path not in verdicts:
            return 404, "application/json", b'{"error": "not found"}'
        status, verdict = verdicts[path]()
        return status, "application/json", json.dumps(verdict).encode()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # probes every few seconds would drown the worker logs
