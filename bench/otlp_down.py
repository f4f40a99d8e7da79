"""Throughput with the OTLP endpoint down vs a working one (issue 7, fault 4: "within noise of the normal run").

Variants of one workload, each measurement in a fresh subprocess, in interleaved rounds (the first variant
rotating per round):

* ``sink``: spans go to ``otlp_receiver.counting``, a separate receiver process that decodes and counts them.
* ``refused``: the endpoint is a loopback port with a socket bound but not listening (connection refused).
* ``blackhole``: the endpoint accepts connections (a listening socket that never accepts) and never answers,
  so an export attempt lasts the exporter's whole timeout (10 s).

Workload (``consume``): a StubBroker with Dramatiq's default middleware and ``observability.install(broker,
Tracing(tracer_provider=...))``, the provider exporting through ``span_processor_from_env`` (our
``PipeSpanProcessor``: an export process with the SDK's OTLP/HTTP exporter), as a deployed worker does. N messages
to a no-op actor are sent untimed, the send spans flushed (bounded by the flush's timeout), then
``Worker(8 threads)`` is timed from start to ``join``. Each child reports its rate, its VmHWM and its processor's
counts.

Usage::

    .venv/bin/python bench/otlp_down.py                 # 5 rounds of N = 10,000
    .venv/bin/python bench/otlp_down.py -n 4000 -r 2    # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VARIANTS = ("sink", "refused", "blackhole")
QUEUE = "bench_otlp_down"
WORKER_THREADS = 8


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def child(endpoint: str, n: int) -> dict[str, Any]:
    """One measurement in this (fresh) process; the result as a dict."""
    import dramatiq
    from dramatiq.brokers.stub import StubBroker
    from dramatiq.middleware import default_middleware
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from observability import Tracing, install
    from observability.sdk.span_pipe import PipeSpanProcessor
    from observability.sdk.tracing import span_processor_from_env

    provider = TracerProvider(resource=Resource.create({"service.name": "tracedq-bench-otlp-down"}))
    environ = {**os.environ, "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint}
    processor = span_processor_from_env(environ)
    assert isinstance(processor, PipeSpanProcessor)
    provider.add_span_processor(processor)
    broker = StubBroker(middleware=[factory() for factory in default_middleware])
    install(broker, Tracing(tracer_provider=provider))

    def bench_noop(i: int) -> None:
        pass

    actor = dramatiq.actor(actor_name="bench_noop", queue_name=QUEUE, broker=broker)(bench_noop)
    for i in range(n):
        actor.send(i)
    provider.force_flush(5_000)  # the send spans are not part of the timed window
    rss_before = _status_kib("VmRSS")
    worker = dramatiq.Worker(broker, worker_threads=WORKER_THREADS)
    cpu0, t0 = time.process_time(), time.perf_counter()
    worker.start()
    broker.join(QUEUE, fail_fast=True)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    hwm = _status_kib("VmHWM")
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
        self.sink = subprocess.Popen(
            [sys.executable, "-m", "otlp_receiver.counting", "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.sink.stdout is not None
        line = self.sink.stdout.readline().split()
        if len(line) != 2 or line[0] != "listening":
            self.sink.kill()
            raise SystemExit(f"sink did not start: {line}")
        self.refused = socket.socket()
        self.refused.bind(("127.0.0.1", 0))
        self.blackhole = socket.socket()
        self.blackhole.bind(("127.0.0.1", 0))
        self.blackhole.listen(4096)
        self.urls = {
            "sink": f"http://127.0.0.1:{line[1]}/v1/traces",
            "refused": f"http://127.0.0.1:{self.refused.getsockname()[1]}/v1/traces",
            "blackhole": f"http://127.0.0.1:{self.blackhole.getsockname()[1]}/v1/traces",
        }

    def close(self) -> None:
        self.sink.terminate()
        self.sink.wait(timeout=10)
        self.refused.close()
        self.blackhole.close()


def run_child(variant: str, endpoint: str, n: int, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", endpoint, "-n", str(n)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{variant} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["variant"] = variant
    result["log_lines"] = sum("span export failing" in line for line in proc.stderr.splitlines())
    return result


def report(results: list[dict[str, Any]], rounds: int) -> str:
    by: dict[str, list[dict[str, Any]]] = {v: [r for r in results if r["variant"] == v] for v in VARIANTS}
    lines = [
        f"consume, StubBroker, {WORKER_THREADS} worker threads, N = {results[0]['n']}, {rounds} interleaved rounds",
        "",
        "| variant | median msg/s | paired ratio to sink: median [min, max] | median VmHWM MiB | spans exported"
        " / lost (median) | 'span export failing' lines (median) |",
        "|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        rows = by[variant]
        rates = [r["rate"] for r in rows]
        ratios = [r["rate"] / s["rate"] for r, s in zip(rows, by["sink"], strict=True)]
        lines.append(
            f"| {variant} | {statistics.median(rates):.0f} "
            f"| {statistics.median(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}] "
            f"| {statistics.median(r['vmhwm_kib'] for r in rows) / 1024:.1f} "
            f"| {statistics.median(r['exported'] for r in rows):.0f}"
            f" / {statistics.median(r['lost'] for r in rows):.0f} "
            f"| {statistics.median(r['log_lines'] for r in rows):.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--messages", type=int, default=10_000)
    parser.add_argument("-r", "--rounds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement")
    parser.add_argument("--child", metavar="ENDPOINT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.messages)), flush=True)
        return
    endpoints = Endpoints()
    results: list[dict[str, Any]] = []
    try:
        for r in range(args.rounds):
            order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
            for variant in order:
                result = run_child(variant, endpoints.urls[variant], args.messages, args.timeout)
                result["round"] = r
                results.append(result)
                print(
                    f"round {r + 1}/{args.rounds} {variant:<9} {result['rate']:>7.0f} msg/s"
                    f"  VmHWM {result['vmhwm_kib'] / 1024:.1f} MiB"
                    f"  exported {result['exported']} lost {result['lost']}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        endpoints.close()
    print("\n" + report(results, args.rounds))


if __name__ == "__main__":
    main()
