"""The harness of ``bench/otlp_down.py``: the three endpoints, one measurement per fresh child, and the child side.

:class:`Endpoints` holds the sink, a refused port (a socket bound but not listening) and a blackhole port (a
listening socket that never accepts, so an export attempt lasts the exporter's whole timeout) for the whole run.
:func:`run_child` runs ``otlp_down.py --child ENDPOINT`` and reads its result; :func:`child` is what that child
does: build the workload (``bench/workload/otlp_down_broker.py``), send N untimed, time the worker to ``join``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness.processes import status_kib
from bench.harness.sink import Sink
from bench.workload.otlp_down_broker import QUEUE, WORKER_THREADS, build

__all__ = ["Endpoints", "child", "run_child"]

#: The entry script, whose ``--child`` mode runs :func:`child`.
_ENTRY = Path(__file__).resolve().parents[1] / "otlp_down.py"


def child(endpoint: str, n: int) -> dict[str, Any]:
    """One measurement in this (fresh) process; the result as a dict."""
    import dramatiq

    workload = build(endpoint)
    broker, provider, processor = workload.broker, workload.provider, workload.processor
    for i in range(n):
        workload.actor.send(i)
    provider.force_flush(5_000)  # the send spans are not part of the timed window
    rss_before = status_kib("VmRSS")
    worker = dramatiq.Worker(broker, worker_threads=WORKER_THREADS)
    cpu0, t0 = time.process_time(), time.perf_counter()
    worker.start()
    broker.join(QUEUE, fail_fast=True)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    hwm = status_kib("VmHWM")
    worker.stop()
    provider.force_flush(5_000)
    counts = processor.counts()
    processor.shutdown(timeout_millis=1_000)
    return {
        "n": n,
        "seconds": elapsed,
        "rate": n / elapsed,
        "cpu_us": cpu / n * 1e6,
        "rss_before_kib": rss_before,
        "vmhwm_kib": hwm,
        "spans_ended": 2 * n,
        "exported": counts.exported,
        "lost": counts.failed + counts.dropped,
        "queued": counts.queued,
    }


class Endpoints:
    """The sink process, a refused port and a blackhole port, for the whole run."""

    def __init__(self) -> None:
        self.sink = Sink()
        self.refused = socket.socket()
        self.refused.bind(("127.0.0.1", 0))
        self.blackhole = socket.socket()
        self.blackhole.bind(("127.0.0.1", 0))
        self.blackhole.listen(4096)
        self.urls = {
            "sink": self.sink.endpoint,
            "refused": f"http://127.0.0.1:{self.refused.getsockname()[1]}/v1/traces",
            "blackhole": f"http://127.0.0.1:{self.blackhole.getsockname()[1]}/v1/traces",
        }

    def close(self) -> None:
        self.sink.close()
        self.refused.close()
        self.blackhole.close()


def run_child(variant: str, endpoint: str, n: int, timeout: float) -> dict[str, Any]:
    """One measurement of ``variant`` in a fresh process, with the export-failure lines its log shows."""
    cmd = [sys.executable, str(_ENTRY), "--child", endpoint, "-n", str(n)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{variant} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["variant"] = variant
    result["log_lines"] = sum("span export failing" in line for line in proc.stderr.splitlines())
    return result
