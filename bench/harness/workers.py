"""Real ``dramatiq`` worker trees for the benchmarks, a fast producer for their queues, and their records.

* :class:`WorkerTree`: ``dramatiq --skip-logging bench.workload.worker_actors -p N -t N -Q <queue>`` in its own session,
  configured only through its environment (as deployed), exporting spans to the bench's OTLP sink.
* :class:`Publisher`: publishes Dramatiq messages for the bench actors straight over pika, each with its own
  W3C ``traceparent`` in ``options.trace_context`` (as our producers send them), so the worker's
  ``Tracing`` extracts a parent as it does in production.
* :class:`Records`: the lines the actors append (``bench/workload/worker_actors.py``), read incrementally.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pika

from bench.harness.common import DRAMATIQ, ROOT, group_cpu, migrated_sqlite, status_kib, stop_process
from bench.workload.kinds import KINDS, RECORDS_ENV

__all__ = ["Publisher", "Records", "WorkerTree"]

_FLUSH_EVERY = 200
# Only what a process needs to run; everything else is set explicitly, so a stray OTEL_*, dramatiq_* or
# RABBITMQ_QUEUE_TYPE in the caller's shell cannot change what is measured.
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")


class Publisher:
    """Publishes bench messages over one pika connection (one thread only, as pika requires)."""

    def __init__(self, amqp_url: str) -> None:
        parameters = pika.URLParameters(amqp_url)
        parameters.heartbeat = 0  # the bench waits minutes between calls at times; no heartbeat to miss
        self.amqp_url = amqp_url
        self.connection = pika.BlockingConnection(parameters)
        self.channel = self.connection.channel()
        self._properties = pika.BasicProperties(delivery_mode=2)

    def declare(self, kind: str) -> str:
        """Declare the kind's queue (with its .DQ and .XQ) exactly as Dramatiq does; returns its name."""
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        queue = KINDS[kind][1]
        broker = RabbitmqBroker(url=self.amqp_url, middleware=[])
        try:
            broker.declare_queue(queue, ensure=True)
        finally:
            broker.close()
        return queue

    @staticmethod
    def body(kind: str, sent: float) -> bytes:
        """One Dramatiq message for ``kind``'s actor, ``args=[sent]``, with a fresh sampled traceparent."""
        actor_name, queue = KINDS[kind]
        traceparent = f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"
        message = {
            "queue_name": queue,
            "actor_name": actor_name,
            "args": [sent],
            "kwargs": {},
            "options": {"trace_context": {"traceparent": traceparent}},
            "message_id": str(uuid.uuid4()),
            "message_timestamp": int(sent * 1000),
        }
        return json.dumps(message, separators=(",", ":")).encode()

    def fill(self, kind: str, n: int) -> float:
        """Publish ``n`` messages as fast as possible; returns the seconds it took.

        ``BlockingChannel.basic_publish`` flushes and polls the socket per message (about 2,300 msg/s on the
        2-core VM); queuing the frames on the underlying channel and flushing every 200 reaches about 9,000.
        """
        queue = KINDS[kind][1]
        impl = self.channel._impl  # pika's asynchronous channel under the blocking one
        started = time.perf_counter()
        for i in range(n):
            impl.basic_publish("", queue, self.body(kind, time.time()), self._properties)
            if i % _FLUSH_EVERY == 0:
                self.connection.process_data_events(0)
        self.connection.process_data_events(0)
        return time.perf_counter() - started

    def send(self, kind: str, sent: float) -> None:
        """Publish one message now (flushed before returning)."""
        self.channel.basic_publish("", KINDS[kind][1], self.body(kind, sent), self._properties)

    def ready(self, kind: str) -> int:
        """Messages ready in the kind's queue (not counting those a consumer holds unacked)."""
        return int(self.channel.queue_declare(KINDS[kind][1], passive=True).method.message_count)

    def wait_ready(self, kind: str, n: int, timeout: float = 60.0) -> int:
        """Wait until RabbitMQ has taken all ``n`` published messages in (no consumer running)."""
        deadline = time.monotonic() + timeout
        while (count := self.ready(kind)) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return count

    def purge(self, kind: str) -> None:
        self.channel.queue_purge(KINDS[kind][1])

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


class Records:
    """``(pid, sent, started, finished)`` per processed message, read from the actors' append-only file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_bytes(b"")
        self.rows: list[tuple[int, float, float, float]] = []
        self._offset = 0
        self._partial = b""

    def poll(self) -> int:
        """Read what was appended since the last call; returns the number of records so far."""
        with self.path.open("rb") as records:
            records.seek(self._offset)
            data = records.read()
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            pid, sent, started, finished = line.split()
            self.rows.append((int(pid), float(sent), float(started), float(finished)))
        return len(self.rows)

    def pids(self) -> set[int]:
        return {row[0] for row in self.rows}


class WorkerTree:
    """One ``dramatiq`` main process and its worker processes, consuming one bench queue."""

    def __init__(
        self,
        kind: str,
        *,
        processes: int,
        threads: int,
        prefetch: int | None,
        amqp_url: str,
        endpoint: str,
        workdir: Path,
        tag: str,
    ) -> None:
        self.kind, self.processes, self.threads, self.prefetch = kind, processes, threads, prefetch
        self.workdir, self.tag = workdir, tag
        workdir.mkdir(parents=True, exist_ok=True)
        self.records = Records(workdir / f"{tag}.records")
        env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
        env.update(
            PYTHONPATH=str(ROOT),
            BROKER_URL=amqp_url,
            LOG_FORMAT="json",
            HEALTH_PORT="0",  # no endpoint: port 9200 may belong to someone else's worker
            WORKER_HEARTBEAT_DIR=str(workdir / "heartbeats"),
            DATABASE_URL=migrated_sqlite(workdir / "bench.db"),
            OTEL_SERVICE_NAME="tracedq-bench-worker",
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=endpoint,
        )
        env[RECORDS_ENV] = str(self.records.path)
        if prefetch is not None:
            # Dramatiq 2.x reads this once, when dramatiq.worker is imported; there is no CLI flag or
            # Worker argument. Unset means 2 x threads.
            env["dramatiq_queue_prefetch"] = str(prefetch)
        self.env = env
        self.argv = [str(DRAMATIQ), "--skip-logging", "bench.workload.worker_actors", "-p", str(processes)]
        self.argv += ["-t", str(threads), "-Q", KINDS[kind][1]]
        self.proc: Any = None
        self.started = 0.0

    def start(self) -> WorkerTree:
        import subprocess

        # Files, not pipes: nobody drains a pipe while the bench waits, and a full pipe blocks the worker.
        with (self.workdir / f"{self.tag}.log").open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started = time.time()
        return self

    def check(self) -> None:
        """Raise if the tree has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            tail = (self.workdir / f"{self.tag}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"worker {self.tag} exited with {self.proc.returncode}:\n{tail}")

    def wait_consuming(self, timeout: float = 120.0) -> float:
        """Wait until every worker process has run a message; returns the seconds since start."""
        deadline = time.monotonic() + timeout
        while len(self.records.pids()) < self.processes:
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker {self.tag}: {len(self.records.pids())} of {self.processes} consuming")
            time.sleep(0.05)
            self.records.poll()
        return time.time() - self.started

    def cpu(self) -> float:
        """CPU seconds used so far by the whole tree (main and worker processes)."""
        return group_cpu(self.proc.pid)

    def rss_kib(self) -> dict[int, tuple[int, int]]:
        """``pid -> (VmRSS, VmHWM)`` in KiB for every worker process that has recorded a message."""
        return {pid: (status_kib("VmRSS", pid), status_kib("VmHWM", pid)) for pid in self.records.pids()}

    def stop(self) -> None:
        stop_process(self.proc, timeout=30)
