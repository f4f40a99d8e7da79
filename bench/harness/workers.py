"""Real ``dramatiq`` worker trees for the benchmarks, and the records their actors write.

* :class:`WorkerTree`: ``dramatiq --skip-logging bench.workload.worker_actors -p N -t N -Q <queue>`` in its own
  session, configured only through its environment (as deployed), exporting spans to the bench's OTLP sink.
* :class:`Records`: the lines the actors append (``bench/workload/worker_actors.py``), read incrementally.

Their queues are filled by ``bench/workload/producer.py``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.harness.environment import migrated_sqlite, passed_env
from bench.harness.processes import DRAMATIQ, ROOT, group_cpu, status_kib, stop_process
from bench.workload.kinds import KINDS, RECORDS_ENV

__all__ = ["Records", "WorkerTree"]


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
        env = passed_env()
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
