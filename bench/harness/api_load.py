"""The producer API benchmark's load and measurements: open-loop latency, closed-loop throughput, actor starts.

* :func:`measure_latency`: request i is sent at start + i/rate by the clock, whatever the earlier requests are
  doing (``httpx.AsyncClient``, one task per request, no connection limit); latency = actor start (read from
  Redis, where the worker notes it) - ``time.time()`` just before ``client.post``.
* :func:`measure_throughput`: closed-loop clients POST back to back; req/s counts the 202s completed in the
  measured window, and the API process's CPU over the window gives CPU µs per request.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from bench.harness.api_stack import AUTH, Stack
from bench.report.results import pct
from bench.workload.api_app import order_body

__all__ = [
    "actor_starts",
    "closed_loop",
    "measure_latency",
    "measure_throughput",
    "open_loop",
    "redis_client",
    "warm_up",
]


async def open_loop(base: str, rate: float, seconds: float, tag: str) -> list[dict[str, Any]]:
    """Send rate*seconds POSTs on a fixed schedule; each request is a task, so responses never pace the sends."""
    import httpx

    n = max(1, round(rate * seconds))
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    records: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0, headers=AUTH) as client:

        async def one(i: int, scheduled: float) -> None:
            body = order_body(tag, i)
            sent = time.time()
            record: dict[str, Any] = {"scheduled": scheduled, "sent": sent}
            try:
                response = await client.post("/orders", json=body)
                record["done"] = time.time()
                record["status"] = response.status_code
                if response.status_code == 202:
                    record["message_id"] = response.json()["message_id"]
            except httpx.HTTPError as exc:
                record["done"], record["status"], record["error"] = time.time(), 0, type(exc).__name__
            records.append(record)

        tasks: list[asyncio.Task[None]] = []
        start_mono, start_wall = time.monotonic() + 0.05, time.time() + 0.05
        for i in range(n):
            delay = start_mono + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, start_wall + i / rate)))
        await asyncio.gather(*tasks)
    return records


async def closed_loop(
    base: str, clients: int, warmup: float, seconds: float, tag: str, api_cpu: Callable[[], float]
) -> dict[str, Any]:
    """``clients`` loops POSTing back to back; counts 202s that complete inside the measured window."""
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    loop = asyncio.get_running_loop()
    begin = loop.time() + warmup
    end = begin + seconds
    counts = {"ok": 0, "errors": 0}
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0, headers=AUTH) as client:

        async def run(c: int) -> None:
            i = 0
            while loop.time() < end:
                t0 = loop.time()
                try:
                    response = await client.post("/orders", json=order_body(f"{tag}-c{c}", i))
                    ok = response.status_code == 202
                except httpx.HTTPError:
                    ok = False
                t1 = loop.time()
                i += 1
                if begin <= t1 <= end:
                    counts["ok" if ok else "errors"] += 1
                    if ok:
                        latencies.append(t1 - t0)

        marks: dict[str, float] = {}

        async def mark() -> None:  # process CPU readings at the window's edges
            await asyncio.sleep(max(0.0, begin - loop.time()))
            marks["client0"], marks["api0"] = time.process_time(), api_cpu()
            await asyncio.sleep(max(0.0, end - loop.time()))
            marks["client1"], marks["api1"] = time.process_time(), api_cpu()

        await asyncio.gather(mark(), *(run(c) for c in range(clients)))
    return {
        "ok": counts["ok"],
        "errors": counts["errors"],
        "latencies": latencies,
        "client_cpu": marks["client1"] - marks["client0"],
        "api_cpu": marks["api1"] - marks["api0"],
    }


def redis_client(url: str) -> Any:
    """A Redis client (redis is imported only here)."""
    import redis

    return redis.Redis.from_url(url)


def actor_starts(args: argparse.Namespace, key: str, ids: list[str], timeout: float) -> dict[str, float]:
    """Actor start times for ``ids``, waiting up to ``timeout`` seconds for stragglers."""
    client = redis_client(args.redis_url)
    deadline = time.monotonic() + timeout
    found: dict[str, float] = {}
    while True:
        missing = [i for i in ids if i not in found]
        if missing:
            for message_id, value in zip(missing, client.hmget(key, missing), strict=True):
                if value is not None:
                    found[message_id] = float(value)
        if len(found) == len(ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def measure_latency(stack: Stack, rate: float, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    stack.enqueue_times()  # drop the warm-up's
    records = asyncio.run(open_loop(stack.base, rate, args.latency_seconds, tag))
    enqueue = stack.enqueue_times()
    ids = [r["message_id"] for r in records if "message_id" in r]
    starts = actor_starts(args, stack.key, ids, timeout=30)
    records.sort(key=lambda r: r["sent"])
    e2e = [starts[r["message_id"]] - r["sent"] for r in records if r.get("message_id") in starts]
    response = [r["done"] - r["sent"] for r in records if r.get("status") == 202]
    lag = [r["sent"] - r["scheduled"] for r in records]
    sent = sorted(r["sent"] for r in records)
    result: dict[str, Any] = {
        "scenario": "latency",
        "rate": rate,
        "requests": len(records),
        "accepted": len(ids),
        "errors": len(records) - len(ids),
        "not_started": len(ids) - len(e2e),
        "achieved_rate": (len(sent) - 1) / (sent[-1] - sent[0]) if len(sent) > 1 else 0.0,
        "lag_p99_ms": pct(lag, 99) * 1e3,
        "lag_max_ms": max(lag) * 1e3,
        # the API falling behind the schedule shows as a last tenth much slower than the run as a whole
        "e2e_last_tenth_p50_ms": pct(e2e[-max(1, len(e2e) // 10) :], 50) * 1e3 if e2e else None,
    }
    for name, values in (("e2e", e2e), ("response", response), ("enqueue", enqueue)):
        if values:
            for q in (50, 95, 99):
                result[f"{name}_p{q}_ms"] = pct(values, q) * 1e3
            result[f"{name}_max_ms"] = max(values) * 1e3
    result["e2e_ms"] = [round(v * 1e3, 3) for v in e2e]  # raw, for pooled percentiles
    return result


def measure_throughput(stack: Stack, clients: int, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    stack.enqueue_times()  # drop the latency scenarios'
    loop_result = asyncio.run(
        closed_loop(stack.base, clients, args.throughput_warmup, args.throughput_seconds, tag, stack.api_cpu)
    )
    ok = loop_result["ok"]
    enqueue = stack.enqueue_times()
    latencies = loop_result["latencies"]
    return {
        "scenario": "throughput",
        "clients": clients,
        "seconds": args.throughput_seconds,
        "accepted": ok,
        "errors": loop_result["errors"],
        "rps": ok / args.throughput_seconds,
        "api_cpu_us": loop_result["api_cpu"] / max(1, ok) * 1e6,
        "client_cpu_us": loop_result["client_cpu"] / max(1, ok) * 1e6,
        "response_p50_ms": pct(latencies, 50) * 1e3 if latencies else None,
        "response_p99_ms": pct(latencies, 99) * 1e3 if latencies else None,
        "enqueue_p50_ms": pct(enqueue, 50) * 1e3 if enqueue else None,
    }


def warm_up(stack: Stack, args: argparse.Namespace, tag: str) -> None:
    """Sequential POSTs until the worker has run one of them: both processes are then ready."""
    import httpx

    with httpx.Client(base_url=stack.base, timeout=30.0, headers=AUTH) as client:
        ids = []
        for i in range(args.warmup_requests):
            response = client.post("/orders", json=order_body(f"{tag}-warm", i))
            response.raise_for_status()
            ids.append(response.json()["message_id"])
    if len(actor_starts(args, stack.key, ids, timeout=60)) != len(ids):
        raise SystemExit(f"worker did not run the warm-up messages; see {stack.logdir}/{stack.tag}-worker.log")
