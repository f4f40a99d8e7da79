"""The producer API benchmark's processes for one variant: the API and a worker, started fresh, and their queues.

:class:`Stack` starts ``uvicorn --factory bench.workload.api_app:create_bench_app`` and ``dramatiq
bench.workload.api_app:setup_worker --processes 1 --threads 8 --queues bench_api`` with the variant's
environment, waits for the API to answer, and stops both; the logs go to a folder of the caller's.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import IO

from bench.harness.environment import migrated_sqlite
from bench.harness.processes import DRAMATIQ, ROOT, cpu_seconds, free_port, group_cpu, stop_process
from bench.harness.rabbitmq import delete_queues
from bench.harness.sink import Sink
from bench.workload.api_app import KEY_ENV, QUEUE, REDIS_ENV

__all__ = ["API_KEY", "AUTH", "WORKER_THREADS", "Stack", "delete_bench_queues"]

# The API wants a key (api/auth.py): one per bench run, given to the API process and sent by every client.
API_KEY = secrets.token_urlsafe(32)
AUTH = {"Authorization": f"Bearer {API_KEY}"}
WORKER_THREADS = 8


def delete_bench_queues(amqp_url: str) -> None:
    """Delete ``bench_api`` with its ``.DQ`` and ``.XQ``."""
    delete_queues(amqp_url, (QUEUE, f"{QUEUE}.DQ", f"{QUEUE}.XQ"))


class Stack:
    """The API and worker processes for one variant, with their logs in ``logdir``."""

    def __init__(self, variant: str, args: argparse.Namespace, sink: Sink | None, logdir: Path, tag: str) -> None:
        self.variant, self.args, self.logdir, self.tag = variant, args, logdir, tag
        self.key = f"bench_api:{uuid.uuid4().hex}"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(BROKER_URL=args.amqp_url, LOG_FORMAT="json", PYTHONPATH=str(ROOT))
        # No health endpoint (port 9200 may be taken by someone else's worker) and heartbeats beside the logs.
        env.update(HEALTH_PORT="0", WORKER_HEARTBEAT_DIR=str(logdir / "heartbeats"))
        env.update({KEY_ENV: self.key, REDIS_ENV: args.redis_url})
        # A database of its own for the API's accepted orders: order ids repeat from one bench run to the next.
        database = logdir / f"{tag}-api.db"
        database.unlink(missing_ok=True)
        env.update(API_KEYS=API_KEY, DATABASE_URL=migrated_sqlite(database))
        if variant == "untraced":
            env["OTEL_SDK_DISABLED"] = "true"
        else:
            assert sink is not None
            env.update(OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=sink.endpoint)
        self.env = env
        self.api: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []

    def _spawn(self, name: str, cmd: list[str], service: str) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{self.tag}-{name}.log", "wb")  # noqa: SIM115 (closed in close())
        self._logs.append(log)
        env = {**self.env, "OTEL_SERVICE_NAME": service}
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start(self) -> None:
        worker_cmd = [str(DRAMATIQ), "bench.workload.api_app:setup_worker"]
        worker_cmd += ["--processes", "1", "--threads", str(WORKER_THREADS), "--queues", QUEUE]
        self.worker = self._spawn("worker", worker_cmd, "tracedq-bench-worker")
        api_cmd = [sys.executable, "-m", "uvicorn", "--factory", "bench.workload.api_app:create_bench_app"]
        api_cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.api = self._spawn("api", api_cmd, "tracedq-bench-api")
        deadline = time.monotonic() + 60
        while True:
            if self.api.poll() is not None:
                raise SystemExit(f"API exited ({self.api.returncode}); see {self.logdir}/{self.tag}-api.log")
            try:
                with urllib.request.urlopen(self.base + "/health/live", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"API did not answer within 60 s; see {self.logdir}/{self.tag}-api.log")
            time.sleep(0.1)

    def enqueue_times(self) -> list[float]:
        request = urllib.request.Request(self.base + "/bench/enqueue-times", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            seconds: list[float] = json.load(response)["seconds"]
        return seconds

    def api_cpu(self) -> float:
        assert self.api is not None
        return cpu_seconds(self.api.pid)

    def settle(self, timeout: float = 20.0, window: float = 0.5, busy: float = 0.1) -> float:
        """Wait until the API and worker trees use under ``busy`` of a core over ``window`` (imports in
        forked helper processes go on after the worker answers). Returns the seconds waited."""
        groups = [p.pid for p in (self.api, self.worker) if p is not None and p.poll() is None]
        started = time.monotonic()
        before = sum(group_cpu(g) for g in groups)
        while time.monotonic() - started < timeout:
            time.sleep(window)
            now = sum(group_cpu(g) for g in groups)
            if now - before < busy * window:
                break
            before = now
        return time.monotonic() - started

    def stop_worker(self) -> None:
        stop_process(self.worker)

    def close(self) -> None:
        stop_process(self.worker)
        stop_process(self.api)
        for log in self._logs:
            log.close()
