"""Real worker trees under load: RSS over 100,000 messages, 1 vs 2 processes, and the threads/prefetch sweep.

One *cell* (``bench/workload/sweep_cells.py``) is one fresh ``dramatiq bench.workload.worker_actors`` tree
(``bench/harness/workers.py``) with given processes, threads and prefetch, measured in up to two phases:

1. **throughput**: the queue is filled before the tree starts; once every worker process has run a message,
   wait ``warmup`` seconds, then count the messages *started* in the next ``window`` seconds. The tree's CPU
   over the window gives CPU ms per message. If the backlog ran out inside the window the cell says
   ``drained`` and the rate covers the part of the window that had work.
2. **latency** (sweep only): purge what is left, wait until the worker is idle, then publish at a fixed
   ``load`` (msgs/s) for ``seconds`` (open loop, each message stamped with ``time.time()`` just before its publish);
   consumer latency = actor start - that stamp (same clock). Messages not started ``tail`` seconds after the
   last publish count with the time they had waited so far (a lower bound) and mark the cell ``saturated``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.harness.sink import Sink
from bench.harness.workers import WorkerTree
from bench.report.results import pct
from bench.workload.kinds import IO_SECONDS
from bench.workload.producer import Publisher
from bench.workload.sweep_cells import DEFAULT_PREFETCH, Cell

__all__ = ["rss", "run_cell"]

_CAPACITY_GUESS = {"noop": 2000.0, "cpu": 450.0, "io": 800.0}  # msg/s per process, to size the backlog


def _sleep_until(when: float) -> None:
    delay = when - time.time()
    if delay > 0:
        time.sleep(delay)


def _throughput(tree: WorkerTree, cell: Cell, backlog: int) -> dict[str, Any]:
    t0 = time.time() + cell.warmup
    _sleep_until(t0)
    cpu0 = tree.cpu()
    _sleep_until(t0 + cell.window)
    t1, cpu1 = time.time(), tree.cpu()
    time.sleep(0.1 + (IO_SECONDS if cell.kind == "io" else 0.0))  # records are written when a message ends
    tree.records.poll()
    starts = [row[2] for row in tree.records.rows]
    count = sum(t0 <= s < t1 for s in starts)
    drained = len(starts) >= backlog and max(starts) < t1
    span = (max(starts) - t0) if drained else (t1 - t0)
    return {
        "rate": count / span if span > 0.25 * cell.window else None,
        "window_s": span,
        "count": count,
        "drained": drained,
        "cpu_ms_per_msg": (cpu1 - cpu0) / count * 1e3 if count else None,
    }


def _wait_idle(tree: WorkerTree, quiet: float = 0.3, timeout: float = 30.0) -> None:
    """Wait until no message has finished for ``quiet`` seconds (what the worker had prefetched is done)."""
    last, since, deadline = tree.records.poll(), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.05)
        if (now := tree.records.poll()) != last:
            last, since = now, time.monotonic()


def _latency(tree: WorkerTree, publisher: Publisher, cell: Cell) -> dict[str, Any]:
    assert cell.load is not None
    publisher.purge(cell.kind)
    _wait_idle(tree)
    begin = time.time() + 0.05
    sent: list[float] = []
    lag: list[float] = []
    for i in range(max(1, round(cell.load * cell.seconds))):
        due = begin + i / cell.load
        _sleep_until(due)
        now = time.time()
        publisher.send(cell.kind, now)
        sent.append(now)
        lag.append(now - due)
    cutoff = sent[-1] + cell.tail
    started: dict[str, tuple[float, float]] = {}
    while True:
        tree.records.poll()
        started = {f"{r[1]:.6f}": (r[2], r[3]) for r in tree.records.rows if r[1] >= begin - 1}
        if len(started) >= len(sent) or time.time() >= cutoff:
            break
        time.sleep(0.05)
    end = time.time()
    waits = [started[f"{s:.6f}"][0] - s if f"{s:.6f}" in started else end - s for s in sent]
    service = [finished - start for start, finished in started.values()]
    censored = sum(f"{s:.6f}" not in started for s in sent)
    return {
        "offered_rate": cell.load,
        "sent": len(sent),
        "censored": censored,
        "saturated": censored > 0,
        "lat_p50_ms": pct(waits, 50) * 1e3,
        "lat_p95_ms": pct(waits, 95) * 1e3,
        "lat_p99_ms": pct(waits, 99) * 1e3,
        "service_p50_ms": pct(service, 50) * 1e3 if service else None,
        "publish_lag_p99_ms": pct(lag, 99) * 1e3,
    }


def _backlog(cell: Cell) -> int:
    per_process = _CAPACITY_GUESS[cell.kind]
    if cell.kind == "io":
        per_process = min(per_process, cell.threads / IO_SECONDS, cell.prefetch / IO_SECONDS)
    # with several processes the first may run alone for a second or two while the others import
    margin = 1.0 + (1.5 if cell.processes > 1 else 0.0)
    return int(per_process * cell.processes * (cell.warmup + cell.window + margin) * 1.5) + 50


def run_cell(cell: Cell, *, amqp_url: str, sink: Sink, workdir: Path, tag: str) -> dict[str, Any]:
    """One fresh worker tree, the throughput phase, and the latency phase when ``cell.load`` is set."""
    publisher = Publisher(amqp_url)
    result: dict[str, Any] = {**asdict(cell), "prefetch": cell.prefetch, "tag": tag}
    tree = WorkerTree(
        cell.kind,
        processes=cell.processes,
        threads=cell.threads,
        prefetch=None if cell.prefetch_spec == DEFAULT_PREFETCH else cell.prefetch,
        amqp_url=amqp_url,
        endpoint=sink.endpoint,
        workdir=workdir,
        tag=tag,
    )
    try:
        publisher.declare(cell.kind)
        publisher.purge(cell.kind)
        backlog = _backlog(cell)
        fill_seconds = publisher.fill(cell.kind, backlog)
        publisher.wait_ready(cell.kind, backlog)
        sink.reset()
        tree.start()
        result.update(backlog=backlog, fill_rate=backlog / fill_seconds, startup_s=tree.wait_consuming())
        result.update(_throughput(tree, cell, backlog))
        if cell.load is not None:
            result.update(_latency(tree, publisher, cell))
    finally:
        tree.stop()
        publisher.purge(cell.kind)
        publisher.close()
    result["processed"] = tree.records.poll()
    result["spans_received"] = sink.count()["spans"]
    return result


def rss(
    messages: int, *, step: int, amqp_url: str, sink: Sink, workdir: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    """One worker process (``-p 1 -t 8``, no-op actor) through ``messages`` messages; VmRSS every ``step``."""
    publisher = Publisher(amqp_url)
    publisher.declare("noop")
    publisher.purge("noop")
    sink.reset()
    tree = WorkerTree(
        "noop",
        processes=1,
        threads=8,
        prefetch=None,
        amqp_url=amqp_url,
        endpoint=sink.endpoint,
        workdir=workdir,
        tag="rss",
    ).start()
    samples: list[dict[str, Any]] = []
    done = threading.Event()
    thresholds = [1, *range(step, messages + 1, step)]

    def sample() -> None:
        while thresholds and not done.is_set():
            n = tree.records.poll()
            while thresholds and n >= thresholds[0]:
                mark = thresholds.pop(0)
                for pid, (rss_kib, hwm_kib) in tree.rss_kib().items():
                    samples.append({"mark": mark, "messages": n, "pid": pid, "rss_kib": rss_kib, "hwm_kib": hwm_kib})
                if n >= step:
                    progress(f"  rss: {n:,} messages, VmRSS {samples[-1]['rss_kib'] / 1024:.1f} MiB")
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, name="bench-rss-sampler", daemon=True)
    sampler.start()
    try:
        published = 0
        while published < messages:  # the worker consumes while the rest is published
            chunk = min(5000, messages - published)
            publisher.fill("noop", chunk)
            published += chunk
            tree.check()
        deadline = time.monotonic() + max(120.0, messages / 200)
        while sampler.is_alive() and time.monotonic() < deadline:
            tree.check()
            sampler.join(timeout=0.5)
    finally:
        done.set()
        tree.stop()
        publisher.purge("noop")
        publisher.close()
    rows = tree.records.rows
    starts = sorted(row[2] for row in rows)
    return {
        "messages": messages,
        "processed": tree.records.poll(),
        "samples": samples,
        "rate": (len(starts) - 1) / (starts[-1] - starts[0]) if len(starts) > 1 else None,
        "spans_received": sink.count()["spans"],
    }
