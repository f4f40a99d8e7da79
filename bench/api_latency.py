"""Producer API benchmark: POST -> actor start latency at a fixed rate, and API requests/s, traced vs. untraced.

Processes, started fresh for every variant in every round (the variant that goes first alternates per round):

* the API: ``uvicorn --factory bench.api_latency:create_bench_app`` (one process, uvicorn's defaults as in
  ``make api``). The app is ``api.app.create_app`` around the real broker (``actors.broker``: RabbitMQ with
  publish confirms, our tracing installed), with its ``orders`` route sending to a bench actor on queue
  ``bench_api`` instead of ``place_order``; the body is a real ``PlaceOrder``. ``broker.enqueue`` is wrapped
  to time each publish (with its send span and confirm); ``POST /bench/enqueue-times`` hands the times over.
* one worker: ``dramatiq bench.api_latency:setup_worker --processes 1 --threads 8 --queues bench_api``. The
  bench actor's first statement is ``time.time()``, stored in Redis (db 14 by default) under its message id.
* ``otlp_receiver.counting``, one OTLP/HTTP receiver for the whole run.

Variants: ``traced`` exports spans over OTLP/HTTP to the sink (API and worker); ``untraced`` sets
``OTEL_SDK_DISABLED=true`` (the instrumentation stays installed and runs against no-op tracers, as it would
in a deployment that turns tracing off). Nothing else differs.

Scenarios, per variant per round:

1. ``latency``: open loop at each ``--rates`` value for ``--latency-seconds``. Request i is sent at
   start + i/rate by the clock, whatever the earlier requests are doing (httpx.AsyncClient, one task per
   request, no connection limit). Latency = actor start (``time.time()`` in the worker) - ``time.time()``
   just before ``client.post`` (same machine, same clock). Also recorded: the client's POST -> 202 time, the
   API's time in ``broker.enqueue`` and the client's lag behind its schedule.
2. ``throughput``: the worker is stopped, then ``--clients`` closed-loop httpx clients POST back to back for
   ``--throughput-warmup`` + ``--throughput-seconds``; req/s counts the 202s completed in the measured window.
   The API process's CPU time (``/proc/<pid>/stat``) over the window gives CPU µs per request.
   ``--clients`` takes a list; 4 is the default because httpx's async pool costs the client more CPU per
   request as connections are added (on the 2-core machine 16 clients gave fewer req/s than 4).

Ratios are paired: traced / untraced within one round. Percentiles in the table are over all rounds' samples
pooled; the paired ratios use each round's own percentiles.

Usage::

    .venv/bin/python bench/api_latency.py                        # full run (about 5-6 minutes)
    .venv/bin/python bench/api_latency.py -r 1 --latency-seconds 3 --throughput-seconds 3   # quick look
    .venv/bin/python bench/api_latency.py --out raw.jsonl        # also keep raw results
    .venv/bin/python bench/api_latency.py --summarize raw.jsonl  # report again from raw results

Needs RabbitMQ (``--amqp-url``) and Redis (``--redis-url``). Queues ``bench_api``, ``bench_api.DQ`` and
``bench_api.XQ`` are deleted before every variant and at the end; the Redis keys are deleted after reading.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    DEFAULT_AMQP_URL,
    DRAMATIQ,
    ROOT,
    Sink,
    cpu_seconds,
    delete_queues,
    describe_machine,
    free_port,
    group_cpu,
    machine_facts,
    med,
    mm,
    pct,
    stop_process,
)

if TYPE_CHECKING:
    import dramatiq
    from fastapi import FastAPI

__all__ = ["build_parser", "create_bench_app", "report", "rounds", "run_variant", "setup_worker"]

QUEUE = "bench_api"
ACTOR = "bench_api_start"
VARIANTS = ("untraced", "traced")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
# The API wants a key (api/auth.py): one per bench run, given to the API process and sent by every client.
API_KEY = secrets.token_urlsafe(32)
AUTH = {"Authorization": f"Bearer {API_KEY}"}
KEY_ENV = "BENCH_API_KEY"  # the Redis hash the worker writes actor start times to
REDIS_ENV = "BENCH_API_REDIS_URL"
WORKER_THREADS = 8
_PACKAGES = ("fastapi", "uvicorn", "httpx", "dramatiq", "pika", "opentelemetry-sdk")
ORDER = {"customer_email": "bench@example.com", "lines": [{"sku": "BENCH-1", "quantity": 1}]}


# ---------------------------------------------------------------------------------------------------
# Child side: the ASGI app factory (uvicorn) and the worker setup (dramatiq CLI). Both import the real
# broker module, which configures logging and the OTel SDK from the environment, as in production.
# ---------------------------------------------------------------------------------------------------


def _declare_bench_actor(broker: dramatiq.Broker, fn: Callable[..., None]) -> dramatiq.Actor[Any, Any]:
    import dramatiq

    return dramatiq.actor(actor_name=ACTOR, queue_name=QUEUE, broker=broker, max_retries=0)(fn)


def create_bench_app() -> FastAPI:
    """``uvicorn --factory bench.api_latency:create_bench_app``: the real app, its orders route on the bench actor."""
    from actors import bootstrap
    from actors.broker import broker, settings
    from api.app import create_app
    from api.auth import ApiKeys
    from api.health import Checks

    def never_runs_here(payload: dict[str, Any]) -> None:  # the worker declares the real body
        raise RuntimeError("the bench actor runs in the worker")

    actor = _declare_bench_actor(broker, never_runs_here)
    enqueue_seconds: list[float] = []
    original = broker.enqueue

    def timed_enqueue(message: Any, *, delay: int | None = None) -> Any:
        started = time.perf_counter()
        try:
            return original(message, delay=delay)
        finally:
            enqueue_seconds.append(time.perf_counter() - started)

    setattr(broker, "enqueue", timed_enqueue)  # noqa: B010 (mypy refuses assigning to a method)
    app = create_app(
        broker=broker,
        actors={"orders": actor},
        jaeger_url=settings.jaeger_url,
        max_body_bytes=settings.api_max_body_bytes,
        checks=Checks(),
        api_keys=ApiKeys(digests=settings.api_key_digests),
        uow=lambda: bootstrap.dependencies().uow(),
    )

    @app.post("/bench/enqueue-times")
    def drain_enqueue_times() -> dict[str, list[float]]:
        data = list(enqueue_seconds)
        enqueue_seconds.clear()
        return {"seconds": data}

    return app


def setup_worker() -> None:
    """``dramatiq bench.api_latency:setup_worker``: the real broker plus the bench actor, which notes its start."""
    import redis
    from dramatiq.middleware import CurrentMessage

    from actors.broker import broker

    client = redis.Redis.from_url(os.environ.get(REDIS_ENV, DEFAULT_REDIS_URL))
    key = os.environ[KEY_ENV]
    broker.add_middleware(CurrentMessage())

    def bench_api_start(payload: dict[str, Any]) -> None:
        started = time.time()
        message = CurrentMessage.get_current_message()
        if message is not None:
            client.hset(key, message.message_id, repr(started))

    _declare_bench_actor(broker, bench_api_start)


# ---------------------------------------------------------------------------------------------------
# Parent side: processes, load generators, measurements.
# ---------------------------------------------------------------------------------------------------


def _delete_queues(amqp_url: str) -> None:
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
        env.update(API_KEYS=API_KEY, DATABASE_URL=f"sqlite:///{database}")
        from services.unit_of_work import create_schema, make_engine

        engine = make_engine(env["DATABASE_URL"])
        create_schema(engine)
        engine.dispose()
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
        worker_cmd = [str(DRAMATIQ), "bench.api_latency:setup_worker"]
        worker_cmd += ["--processes", "1", "--threads", str(WORKER_THREADS), "--queues", QUEUE]
        self.worker = self._spawn("worker", worker_cmd, "tracedq-bench-worker")
        api_cmd = [sys.executable, "-m", "uvicorn", "--factory", "bench.api_latency:create_bench_app"]
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


def _order_body(tag: str, i: int) -> dict[str, Any]:
    return {"order_id": f"{tag}-{i}", **ORDER}


async def _open_loop(base: str, rate: float, seconds: float, tag: str) -> list[dict[str, Any]]:
    """Send rate*seconds POSTs on a fixed schedule; each request is a task, so responses never pace the sends."""
    import httpx

    n = max(1, round(rate * seconds))
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    records: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0, headers=AUTH) as client:

        async def one(i: int, scheduled: float) -> None:
            body = _order_body(tag, i)
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


async def _closed_loop(
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
                    response = await client.post("/orders", json=_order_body(f"{tag}-c{c}", i))
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


def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def _starts(args: argparse.Namespace, key: str, ids: list[str], timeout: float) -> dict[str, float]:
    """Actor start times for ``ids``, waiting up to ``timeout`` seconds for stragglers."""
    client = _redis(args.redis_url)
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
    records = asyncio.run(_open_loop(stack.base, rate, args.latency_seconds, tag))
    enqueue = stack.enqueue_times()
    ids = [r["message_id"] for r in records if "message_id" in r]
    starts = _starts(args, stack.key, ids, timeout=30)
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
        _closed_loop(stack.base, clients, args.throughput_warmup, args.throughput_seconds, tag, stack.api_cpu)
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


def _warm_up(stack: Stack, args: argparse.Namespace, tag: str) -> None:
    """Sequential POSTs until the worker has run one of them: both processes are then ready."""
    import httpx

    with httpx.Client(base_url=stack.base, timeout=30.0, headers=AUTH) as client:
        ids = []
        for i in range(args.warmup_requests):
            response = client.post("/orders", json=_order_body(f"{tag}-warm", i))
            response.raise_for_status()
            ids.append(response.json()["message_id"])
    if len(_starts(args, stack.key, ids, timeout=60)) != len(ids):
        raise SystemExit(f"worker did not run the warm-up messages; see {stack.logdir}/{stack.tag}-worker.log")


def run_variant(variant: str, r: int, args: argparse.Namespace, sink: Sink, logdir: Path) -> list[dict[str, Any]]:
    tag = f"r{r}-{variant}"
    _delete_queues(args.amqp_url)
    sink.reset()
    stack = Stack(variant, args, sink if variant == "traced" else None, logdir, tag)
    results: list[dict[str, Any]] = []
    settled = 0.0
    try:
        stack.start()
        _warm_up(stack, args, tag)
        settled = stack.settle()
        for rate in args.rates:
            results.append(measure_latency(stack, rate, args, f"{tag}-{rate:g}"))
        stack.stop_worker()
        for clients in args.clients:
            results.append(measure_throughput(stack, clients, args, f"{tag}-tp{clients}"))
    finally:
        stack.close()
        _redis(args.redis_url).delete(stack.key)
    spans = sink.count()
    for res in results:
        res.update(round=r, variant=variant, settle_s=settled)
    results[-1].update(spans=spans["spans"], spans_by_name=spans["by_name"])
    return results


def _describe(res: dict[str, Any]) -> str:
    if res["scenario"] == "latency":
        return (
            f"  {res['variant']:<8} latency {res['rate']:>5g}/s: n={res['requests']} (errors {res['errors']}, "
            f"not started {res['not_started']}), e2e p50/p95/p99 {res.get('e2e_p50_ms', 0):.1f}/"
            f"{res.get('e2e_p95_ms', 0):.1f}/{res.get('e2e_p99_ms', 0):.1f} ms, POST->202 p50 "
            f"{res.get('response_p50_ms', 0):.1f} ms, enqueue p50 {res.get('enqueue_p50_ms', 0):.2f} ms, "
            f"lag p99 {res['lag_p99_ms']:.1f} ms"
        )
    return (
        f"  {res['variant']:<8} throughput: {res['rps']:.0f} req/s ({res['clients']} clients, errors {res['errors']}),"
        f" API CPU {res['api_cpu_us']:.0f} µs/req, POST->202 p50 {res['response_p50_ms'] or 0:.1f} ms,"
        f" spans received {res.get('spans', 0)}"
    )


# ---------------------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------------------


def report(results: list[dict[str, Any]]) -> str:
    rounds = sorted({res["round"] for res in results})
    lat = {(res["variant"], res["rate"], res["round"]): res for res in results if res["scenario"] == "latency"}
    tput = {(res["variant"], res["clients"], res["round"]): res for res in results if res["scenario"] == "throughput"}
    rates = sorted({key[1] for key in lat})
    lines = [
        f"{len(rounds)} rounds. Latency: open loop, POST -> actor start; percentiles over all rounds' requests pooled;",
        "paired ratio = traced / untraced in the same round (min / median / max over rounds).",
        "",
        "| rate | variant | requests (errors, not started) | e2e p50 / p95 / p99 ms | POST->202 p50 / p99 ms "
        "| API enqueue p50 / p99 ms | paired ratio p50 | paired ratio p99 | e2e p50, last tenth of sends, ms (median) "
        "| client lag p99 ms (median) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rate in rates:
        for variant in VARIANTS:
            runs = [lat[(variant, rate, r)] for r in rounds if (variant, rate, r) in lat]
            if not runs:
                continue
            pooled = [v / 1e3 for res in runs for v in res["e2e_ms"]]
            e2e = " / ".join(f"{pct(pooled, q) * 1e3:.1f}" for q in (50, 95, 99)) if pooled else "-"
            resp = f"{med(x.get('response_p50_ms') for x in runs)} / {med(x.get('response_p99_ms') for x in runs)}"
            enq = (
                f"{med((x.get('enqueue_p50_ms') for x in runs), '{:.2f}')} / "
                f"{med((x.get('enqueue_p99_ms') for x in runs), '{:.2f}')}"
            )
            ratio: dict[int, str] = {}
            for q in (50, 99):
                pairs = [
                    lat[("traced", rate, r)][f"e2e_p{q}_ms"] / lat[("untraced", rate, r)][f"e2e_p{q}_ms"]
                    for r in rounds
                    if ("traced", rate, r) in lat and ("untraced", rate, r) in lat
                ]
                ratio[q] = "1" if variant == "untraced" else mm(pairs)
            count = (
                f"{sum(x['requests'] for x in runs)} ({sum(x['errors'] for x in runs)}, "
                f"{sum(x['not_started'] for x in runs)})"
            )
            lines.append(
                f"| {rate:g}/s | {variant} | {count} | {e2e} | {resp} | {enq} | {ratio[50]} | {ratio[99]} "
                f"| {med(x.get('e2e_last_tenth_p50_ms') for x in runs)} | {med(x['lag_p99_ms'] for x in runs)} |"
            )
    lines += [
        "",
        "Throughput: closed loop, worker stopped; cells min / median / max over rounds unless noted.",
        "",
        "| variant | clients | req/s | paired ratio | API CPU µs/req | POST->202 p50 / p99 ms (median) "
        "| client CPU µs/req (median) | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for clients in sorted({key[1] for key in tput}):
        for variant in VARIANTS:
            runs = [tput[(variant, clients, r)] for r in rounds if (variant, clients, r) in tput]
            if not runs:
                continue
            pairs = [
                tput[("traced", clients, r)]["rps"] / tput[("untraced", clients, r)]["rps"]
                for r in rounds
                if ("traced", clients, r) in tput and ("untraced", clients, r) in tput
            ]
            paired = "1" if variant == "untraced" else mm(pairs)
            lines.append(
                f"| {variant} | {clients} | {mm((x['rps'] for x in runs), '{:,.0f}')} | {paired} "
                f"| {mm((x['api_cpu_us'] for x in runs), '{:,.0f}')} "
                f"| {med(x['response_p50_ms'] for x in runs)} / {med(x['response_p99_ms'] for x in runs)} "
                f"| {med((x['client_cpu_us'] for x in runs), '{:,.0f}')} | {sum(x['errors'] for x in runs)} |"
            )
    traced = [res for res in results if res["variant"] == "traced" and "spans" in res]
    if traced:
        lines += ["", "Spans received by the sink per traced variant run (API + worker, all scenarios):"]
        lines += [f"- round {x['round']}: {x['spans']} spans, by name {x['spans_by_name']}" for x in traced]
    settle = [res["settle_s"] for res in results if "settle_s" in res]
    if settle:
        lines += ["", f"Settle wait after warm-up (s): {mm(settle, '{:.1f}')}."]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line; ``bench/suite.py`` builds its arguments with it too."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-r", "--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument(
        "--rates",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[50.0, 100.0, 200.0],
        help="req/s (50,100,200)",
    )
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="open-loop duration per rate (10)")
    parser.add_argument(
        "--clients", type=lambda s: [int(x) for x in s.split(",")], default=[4], help="closed-loop clients, list (4)"
    )
    parser.add_argument("--throughput-seconds", type=float, default=10.0, help="measured closed-loop window (10)")
    parser.add_argument("--throughput-warmup", type=float, default=2.0, help="closed-loop warm-up, not counted (2)")
    parser.add_argument("--warmup-requests", type=int, default=20, help="sequential POSTs before measuring (20)")
    parser.add_argument("--amqp-url", default=os.environ.get("BENCH_AMQP_URL", DEFAULT_AMQP_URL))
    parser.add_argument("--redis-url", default=os.environ.get(REDIS_ENV, DEFAULT_REDIS_URL))
    parser.add_argument("--logs", help="keep the API/worker logs in this folder (a temporary one otherwise)")
    parser.add_argument("--out", help="append raw results (JSON lines) to this file")
    parser.add_argument("--summarize", metavar="JSONL", help="only print the report for an --out file")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    if args.summarize:
        with open(args.summarize) as raw:
            print(report([json.loads(line) for line in raw if line.strip()]))
        return

    print(describe_machine(machine_facts(_PACKAGES)), file=sys.stderr, flush=True)
    started = time.monotonic()
    sink = Sink()
    out = open(args.out, "a") if args.out else None  # noqa: SIM115

    def emit(res: dict[str, Any]) -> None:
        if out is not None:
            out.write(json.dumps(res) + "\n")
            out.flush()

    with tempfile.TemporaryDirectory(prefix="bench_api_") as tmp:
        logdir = Path(args.logs or tmp)
        logdir.mkdir(parents=True, exist_ok=True)
        try:
            results = rounds(args, sink, logdir, emit)
        finally:
            sink.close()
            if out is not None:
                out.close()
    print(f"total {time.monotonic() - started:.0f} s", file=sys.stderr)
    print(report(results))


def rounds(
    args: argparse.Namespace, sink: Sink, logdir: Path, emit: Callable[[dict[str, Any]], None] = lambda res: None
) -> list[dict[str, Any]]:
    """Every round, both variants (the first alternating); each result is printed and passed to ``emit``."""
    results: list[dict[str, Any]] = []
    try:
        for r in range(args.rounds):
            order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
            print(f"round {r + 1}/{args.rounds}, order {', '.join(order)}", file=sys.stderr, flush=True)
            for variant in order:
                for res in run_variant(variant, r, args, sink, logdir):
                    results.append(res)
                    print(_describe(res), file=sys.stderr, flush=True)
                    emit(res)
    finally:
        _delete_queues(args.amqp_url)
    return results


if __name__ == "__main__":
    main()
