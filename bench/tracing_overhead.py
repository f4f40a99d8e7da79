"""Paired benchmark: plain Dramatiq vs. our tracing (``ours``) vs. the same middleware on SDK defaults.

Variants (every measurement runs in a fresh subprocess):

* ``plain``: Dramatiq's default middleware, OpenTelemetry never imported.
* ``ours``: default middleware + ``observability.install(broker, Tracing(tracer_provider=provider))`` (so
  ``Tracing`` and ``LogContext``), ``provider`` an SDK ``TracerProvider`` with our ``PipeSpanProcessor``: spans
  go through a pipe to an export process, which sends them with the SDK's OTLP/HTTP exporter to the loopback sink.
  Its export process is started (by one warm-up span) before anything is timed, as a long-lived worker's is.
* ``inline``: the same middleware, the SDK's ``BatchSpanProcessor(max_queue_size=65,536)`` and OTLP/HTTP exporter
  in the worker process (``SPAN_EXPORT=inline``).
* ``sdk_default``: the same middleware, but the SDK's default ``BatchSpanProcessor(OTLPSpanExporter(...))``.
* ``no_export``: the same middleware, spans made and ended but given to a processor that does nothing: the floor.

Spans travel over real OTLP/HTTP to ``bench/otlp_sink.py``, a separate receiver process that decodes and
counts them. One worker process, 8 worker threads, a no-op actor on queue ``bench_tracing``.

Scenarios, each round runs every variant once per scenario, the start variant rotating per round:

1. ``stub_consume``: StubBroker, send N (untimed, spans flushed), time ``Worker(8)`` from start to ``join``.
2. ``rmq_publish``: RabbitMQ, purge ``bench_tracing``, time N ``.send()`` with ``confirm_delivery=True``
   (as our actors publish in production); this fills the queue for 3.
3. ``rmq_consume``: RabbitMQ, queue holds exactly N messages from 2 (same variant), time ``Worker(8)``
   until the actor ran N times (in-actor counter + ``threading.Event``; ``join`` polls and adds >= 1 s).
   Peak RSS (``VmHWM``) of this process is read when the last message has run.
4. ``burst``: StubBroker, tight loop of ``--burst`` ``.send()`` (20,000), then shut the provider down and
   compare spans received by the sink with spans created (counted by a trivial extra span processor).

Ratios are paired: variant rate / plain rate within one round; the report shows min and median.

Usage::

    .venv/bin/python bench/tracing_overhead.py                   # full run, defaults below
    .venv/bin/python bench/tracing_overhead.py -n 4000 -r 2      # quick look
    .venv/bin/python bench/tracing_overhead.py --variants plain,ours   # what `make bench` runs (3 rounds)
    .venv/bin/python bench/tracing_overhead.py --out raw.jsonl   # also keep raw results
    .venv/bin/python bench/tracing_overhead.py --summarize raw.jsonl
    .venv/bin/python bench/tracing_overhead.py --profile         # py-spy profile of ours, RabbitMQ consume
    .venv/bin/python bench/tracing_overhead.py --profile --profile-variant plain --profile-scenario rmq_publish
    .venv/bin/python bench/tracing_overhead.py --rss-breakdown   # VmRSS after each import step of ours

``--profile`` needs py-spy (``uv pip install py-spy``, or ``--py-spy PATH``); it is not a project dependency.
The queue-length sampler and GC accounting in every child are diagnostics (``queue_max``, ``gc_window_s``
in ``--out``); they cost one wake-up per 20 ms.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DEFAULT_AMQP_URL, Sink, describe_machine, machine_facts, mm, status_kib

__all__ = ["VARIANTS", "Sink", "build_parser", "report", "rounds", "run_child"]

VARIANTS = ("plain", "ours", "inline", "sdk_default", "no_export")
QUEUE = "bench_tracing"
ACTOR = "bench_noop"
WORKER_THREADS = 8
TARGETS = {  # scenario -> minimum paired median ratio ours/plain
    "rmq_consume": 0.80,
    "rmq_publish": 0.65,
    "stub_consume": 0.70,
}
RSS_TARGET_MIB = 4.0


# ---------------------------------------------------------------------------------------------------
# Child side: one measurement in a fresh process, result as one JSON line on stdout.
# ---------------------------------------------------------------------------------------------------


@dataclass
class Setup:
    broker: Any
    actor: Any
    done: threading.Event
    target: list[int]  # [N]: the actor sets ``done`` after running N times
    provider: Any = None  # SDK TracerProvider for traced variants
    processor: Any = None  # the export processor (PipeSpanProcessor or BatchSpanProcessor)
    created: Any = None  # counting processor, when asked for
    gc_seconds: float = 0.0  # time inside the cyclic garbage collector
    gc_full: int = 0  # generation-2 collections
    queue_max: int = 0  # largest span-queue length seen by the sampler (traced variants)
    sampling: bool = False


def _watch_gc(setup: Setup) -> None:
    """Account time spent in the cyclic GC: a diagnostic for span-queue growth."""
    import gc

    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            setup.gc_seconds += time.perf_counter() - started[0]
            if info.get("generation") == 2:
                setup.gc_full += 1

    gc.callbacks.append(callback)


def _sample_queue(setup: Setup) -> None:
    """Every 20 ms, note the span queue's length (ours: ``_queue``; SDK: ``_batch_processor._queue``)."""
    processor = setup.processor
    queue = getattr(processor, "_queue", None)
    if queue is None:
        queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
    if queue is None:
        return
    setup.sampling = True

    def run() -> None:
        while setup.sampling:
            current = getattr(processor, "_queue", queue)  # ours re-creates its deque after fork only
            setup.queue_max = max(setup.queue_max, len(current))
            time.sleep(0.02)

    threading.Thread(target=run, name="bench-queue-sampler", daemon=True).start()


def _build(variant: str, *, rabbitmq: bool, amqp_url: str, endpoint: str, count_created: bool = False) -> Setup:
    import dramatiq
    from dramatiq.middleware import default_middleware

    middleware = [factory() for factory in default_middleware]
    broker: Any
    if rabbitmq:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=amqp_url, confirm_delivery=True, middleware=middleware)
    else:
        from dramatiq.brokers.stub import StubBroker

        broker = StubBroker(middleware=middleware)

    setup = Setup(broker=broker, actor=None, done=threading.Event(), target=[0])
    if variant != "plain":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        import observability
        from observability import Tracing

        provider = TracerProvider(resource=Resource.create({"service.name": "tracedq-bench"}))
        if variant == "ours":
            from observability.sdk.span_pipe import PipeSpanProcessor

            environ = {**os.environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint}
            processor: Any = PipeSpanProcessor(environ=environ)
            # A worker lives long: start its export process before anything is timed, as its first span would.
            warm = TracerProvider()
            warm.add_span_processor(processor)
            warm.get_tracer("warm-up").start_span("warm-up").end()
            processor.force_flush()
        elif variant == "inline":
            processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), max_queue_size=65_536)
        elif variant == "sdk_default":
            processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))
        elif variant == "no_export":
            processor = SpanProcessor()  # spans made and ended, exported nowhere: the floor of any export
        else:
            raise SystemExit(f"unknown variant {variant!r}")
        if count_created:

            class _Created(SpanProcessor):
                def __init__(self) -> None:
                    self.count = 0

                def on_end(self, span: Any) -> None:
                    self.count += 1

            setup.created = _Created()
            provider.add_span_processor(setup.created)
        provider.add_span_processor(processor)
        observability.install(broker, Tracing(tracer_provider=provider))
        setup.provider, setup.processor = provider, processor

    _watch_gc(setup)
    if setup.processor is not None:
        _sample_queue(setup)
    counter = itertools.count(1)
    done, target = setup.done, setup.target

    def bench_noop(i: int) -> None:
        if next(counter) == target[0]:  # itertools.count is atomic under the GIL
            done.set()

    setup.actor = dramatiq.actor(actor_name=ACTOR, queue_name=QUEUE, broker=broker)(bench_noop)
    return setup


def _finish(setup: Setup, result: dict[str, Any]) -> dict[str, Any]:
    """Shut the provider down (exports everything still queued) and add span bookkeeping."""
    setup.sampling = False
    result.update(gc_seconds=setup.gc_seconds, gc_full=setup.gc_full, queue_max=setup.queue_max)
    if setup.provider is not None:
        setup.provider.shutdown()
        counts = getattr(setup.processor, "counts", None)
        if counts is not None:
            result.update({f"processor_{name}": getattr(counts(), name) for name in ("dropped", "exported", "failed")})
    if setup.created is not None:
        result["spans_created"] = setup.created.count
    result["otel_imported"] = "opentelemetry" in sys.modules
    return result


def child_stub_consume(variant: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    import dramatiq

    setup = _build(variant, rabbitmq=False, amqp_url=args.amqp_url, endpoint=args.endpoint)
    broker, actor = setup.broker, setup.actor
    setup.target[0] = n
    for i in range(n):
        actor.send(i)
    if setup.provider is not None:
        setup.provider.force_flush()  # the send spans are not part of the consume window
    rss_before = status_kib("VmRSS")
    worker = dramatiq.Worker(broker, worker_threads=WORKER_THREADS)
    cpu0, t0, gc0 = time.process_time(), time.perf_counter(), setup.gc_seconds
    worker.start()
    broker.join(QUEUE, timeout=int(args.timeout * 1000), fail_fast=True)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    gc_window = setup.gc_seconds - gc0
    hwm = status_kib("VmHWM")
    worker.stop()
    result = {"n": n, "gc_window_s": gc_window, "seconds": elapsed, "rate": n / elapsed, "cpu_us": cpu / n * 1e6}
    result.update(rss_before_kib=rss_before, vmhwm_kib=hwm, spans_expected=0 if variant == "plain" else 2 * n)
    return _finish(setup, result)


def child_rmq_publish(variant: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    setup = _build(variant, rabbitmq=True, amqp_url=args.amqp_url, endpoint=args.endpoint)
    broker, actor = setup.broker, setup.actor
    broker.declare_queue(QUEUE, ensure=True)
    broker.flush(QUEUE)
    cpu0, t0, gc0 = time.process_time(), time.perf_counter(), setup.gc_seconds
    for i in range(n):
        actor.send(i)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    gc_window = setup.gc_seconds - gc0
    counts = broker.get_queue_message_counts(QUEUE)
    broker.close()
    result = {
        "n": n,
        "gc_window_s": gc_window,
        "seconds": elapsed,
        "rate": n / elapsed,
        "cpu_us": cpu / n * 1e6,
        "queued": list(counts),
    }
    result["spans_expected"] = 0 if variant == "plain" else n
    return _finish(setup, result)


def child_rmq_consume(variant: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    import dramatiq

    setup = _build(variant, rabbitmq=True, amqp_url=args.amqp_url, endpoint=args.endpoint)
    broker = setup.broker
    counts = broker.get_queue_message_counts(QUEUE)
    if counts[0] != n:
        raise SystemExit(f"expected {n} messages in {QUEUE}, found {counts}")
    setup.target[0] = n
    rss_before = status_kib("VmRSS")
    worker = dramatiq.Worker(broker, worker_threads=WORKER_THREADS)
    cpu0, t0, gc0 = time.process_time(), time.perf_counter(), setup.gc_seconds
    worker.start()
    finished = setup.done.wait(timeout=args.timeout)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    gc_window = setup.gc_seconds - gc0
    hwm = status_kib("VmHWM")
    worker.stop()
    broker.close()
    if not finished:
        raise SystemExit(f"timed out after {args.timeout} s")
    result = {"n": n, "gc_window_s": gc_window, "seconds": elapsed, "rate": n / elapsed, "cpu_us": cpu / n * 1e6}
    result.update(rss_before_kib=rss_before, vmhwm_kib=hwm, spans_expected=0 if variant == "plain" else n)
    return _finish(setup, result)


def child_burst(variant: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    setup = _build(variant, rabbitmq=False, amqp_url=args.amqp_url, endpoint=args.endpoint, count_created=True)
    actor = setup.actor
    cpu0, t0, gc0 = time.process_time(), time.perf_counter(), setup.gc_seconds
    for i in range(n):
        actor.send(i)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    gc_window = setup.gc_seconds - gc0
    result = {"n": n, "gc_window_s": gc_window, "seconds": elapsed, "rate": n / elapsed, "cpu_us": cpu / n * 1e6}
    result["spans_expected"] = 0 if variant == "plain" else n
    return _finish(setup, result)


def child_rss_imports(variant: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """VmRSS (MiB) after each import/setup step of ``ours``: where the fixed part of the RSS delta comes from."""
    steps: list[tuple[str, float]] = [("interpreter", status_kib("VmRSS") / 1024)]

    def step(name: str) -> None:
        steps.append((name, status_kib("VmRSS") / 1024))

    import dramatiq.brokers.rabbitmq  # noqa: F401

    step("dramatiq + RabbitmqBroker (plain has all of this)")
    import opentelemetry.sdk.trace  # noqa: F401

    step("opentelemetry.sdk.trace")
    import observability  # noqa: F401

    step("observability (+ structlog, semconv)")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: F401

    step("OTLP/HTTP exporter (+ requests, urllib3, protobuf, otlp proto)")
    setup = _build(variant, rabbitmq=True, amqp_url=args.amqp_url, endpoint=args.endpoint)
    step(f"broker, provider, processor thread, middleware ({variant})")
    setup.broker.close()
    return _finish(setup, {"n": 0, "rate": 0.0, "cpu_us": 0.0, "rss_steps_mib": steps})


CHILDREN: dict[str, Callable[[str, int, argparse.Namespace], dict[str, Any]]] = {
    "stub_consume": child_stub_consume,
    "rmq_publish": child_rmq_publish,
    "rmq_consume": child_rmq_consume,
    "burst": child_burst,
    "rss_imports": child_rss_imports,
}


# ---------------------------------------------------------------------------------------------------
# Parent side: the sink, the rounds, the report.
# ---------------------------------------------------------------------------------------------------


def run_child(
    scenario: str, variant: str, n: int, sink: Sink, args: argparse.Namespace, prefix: list[str] | None = None
) -> dict[str, Any]:
    sink.reset()
    cmd = [*(prefix or []), sys.executable, str(Path(__file__).resolve()), "--child", f"{scenario}:{variant}"]
    cmd += ["--messages", str(n), "--endpoint", sink.endpoint, "--amqp-url", args.amqp_url]
    cmd += ["--timeout", str(args.timeout)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout + 60, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{scenario}:{variant} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    received = sink.count()
    spans = received["spans"] - received["by_name"].get("warm-up", 0)  # the span that started ours' export process
    result.update(scenario=scenario, variant=variant, spans_received=spans, by_name=received["by_name"])
    return result


def rounds(args: argparse.Namespace, sink: Sink, out: Any) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    scenarios = args.scenarios.split(",")
    for r in range(args.rounds):
        variants = tuple(args.variants.split(","))
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        print(f"round {r + 1}/{args.rounds}, order {', '.join(order)}", file=sys.stderr, flush=True)
        steps: list[tuple[str, str, int]] = []
        for scenario in scenarios:
            for variant in order:
                if scenario == "rmq":
                    steps += [("rmq_publish", variant, args.messages), ("rmq_consume", variant, args.messages)]
                elif scenario == "burst":
                    steps.append(("burst", variant, args.burst))
                else:
                    steps.append((scenario, variant, args.messages))
        for scenario, variant, n in steps:
            result = run_child(scenario, variant, n, sink, args)
            result["round"] = r
            results.append(result)
            if out is not None:
                out.write(json.dumps(result) + "\n")
                out.flush()
            lost = result.get("spans_expected", 0) - result["spans_received"]
            print(
                f"  {scenario:<13} {variant:<12} {result['rate']:>9.0f} msg/s  cpu {result['cpu_us']:6.1f} us/msg"
                f"  spans {result['spans_received']}/{result.get('spans_expected', 0)} (lost {lost})",
                file=sys.stderr,
                flush=True,
            )
    return results


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown tables: rates, paired ratios, spans, RSS, targets."""
    by: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for res in results:
        by[(res["scenario"], res["variant"])][res["round"]] = res
    scenarios = [s for s in ("stub_consume", "rmq_consume", "rmq_publish", "burst") if any(k[0] == s for k in by)]
    lines = [
        f"N = {args.messages} messages (burst {args.burst}), {args.rounds} rounds, {WORKER_THREADS} worker threads.",
        "Cells are min / median / max over rounds. Paired ratio = variant rate / plain rate in the same round.",
        "",
        "| scenario | variant | msgs/s | CPU µs/msg | paired ratio vs plain | paired overhead µs/msg |",
        "|---|---|---|---|---|---|",
    ]
    verdicts: list[str] = []
    for scenario in scenarios:
        plain = by.get((scenario, "plain"), {})
        for variant in VARIANTS:
            runs = by.get((scenario, variant), {})
            if not runs:
                continue
            rates = [x["rate"] for x in runs.values()]
            cpu = [x["cpu_us"] for x in runs.values()]
            ratios = [runs[r]["rate"] / plain[r]["rate"] for r in runs if r in plain]
            over = [1e6 / runs[r]["rate"] - 1e6 / plain[r]["rate"] for r in runs if r in plain]
            ratio_cell = "1" if variant == "plain" else mm(ratios)
            over_cell = "0" if variant == "plain" else mm(over, "{:.1f}")
            rate_cell, cpu_cell = mm(rates, "{:,.0f}"), mm(cpu, "{:.1f}")
            lines.append(f"| {scenario} | {variant} | {rate_cell} | {cpu_cell} | {ratio_cell} | {over_cell} |")
            if variant == "ours" and scenario in TARGETS and ratios:
                med = statistics.median(ratios)
                ok = "HOLDS" if med >= TARGETS[scenario] else "MISSED"
                verdicts.append(
                    f"- {scenario}: ours/plain median {med:.2f}x (min {min(ratios):.2f}x), "
                    f"target >= {TARGETS[scenario]:.2f}x: **{ok}**"
                )
    lines += ["", "Spans (received by the sink / created), per run:", ""]
    lines += ["| scenario | variant | received / created | lost (min / median / max) |", "|---|---|---|---|"]
    for scenario in scenarios:
        for variant in ("ours", "sdk_default"):
            runs = by.get((scenario, variant), {})
            if not runs:
                continue
            pairs = [(x["spans_received"], x.get("spans_created", x.get("spans_expected", 0))) for x in runs.values()]
            lost = [c - g for g, c in pairs]
            cells = ", ".join(f"{g}/{c}" for g, c in pairs)
            lines.append(f"| {scenario} | {variant} | {cells} | {mm(lost, '{:.0f}')} |")
            if scenario == "burst" and variant == "ours":
                ok = "HOLDS" if max(lost) == 0 else "MISSED"
                verdicts.append(f"- burst span loss, ours: max lost {max(lost)} of {args.burst}, target 0: **{ok}**")
            if scenario == "burst" and variant == "sdk_default":
                verdicts.append(
                    f"- burst span loss, sdk_default (for comparison): lost {mm(lost, '{:.0f}')} of {args.burst}"
                )
    lines += ["", f"Worker peak RSS (VmHWM, MiB) of the RabbitMQ consumer after {args.messages} messages:", ""]
    lines += ["| variant | VmRSS before start | VmHWM after N | paired VmHWM delta vs plain |", "|---|---|---|---|"]
    plain_rss = by.get(("rmq_consume", "plain"), {})
    for variant in VARIANTS:
        runs = by.get(("rmq_consume", variant), {})
        if not runs:
            continue
        before = [x["rss_before_kib"] / 1024 for x in runs.values()]
        hwm = [x["vmhwm_kib"] / 1024 for x in runs.values()]
        delta = [(runs[r]["vmhwm_kib"] - plain_rss[r]["vmhwm_kib"]) / 1024 for r in runs if r in plain_rss]
        lines.append(
            f"| {variant} | {mm(before, '{:.1f}')} | {mm(hwm, '{:.1f}')} | "
            f"{'0' if variant == 'plain' else mm(delta, '{:+.1f}')} |"
        )
        if variant == "ours" and delta:
            med = statistics.median(delta)
            ok = "HOLDS" if med <= RSS_TARGET_MIB else "MISSED"
            verdicts.append(
                f"- worker peak RSS, ours - plain: median {med:+.1f} MiB (max {max(delta):+.1f}), "
                f"target <= +{RSS_TARGET_MIB:.0f} MiB: **{ok}**"
            )
    lines += ["", "Targets (ours):", "", *verdicts]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Profile: py-spy over the ``ours`` RabbitMQ consumer.
# ---------------------------------------------------------------------------------------------------

_BUCKETS = (  # (component, path fragments); a frame belongs to the first component that matches
    (
        "OTLP export: encode + HTTP",
        (
            "/opentelemetry/exporter/",
            "/opentelemetry/proto/",
            "/google/protobuf/",
            "/requests/",
            "/urllib3/",
            "/http/client.py",
            "/socket.py",
            "/ssl.py",
        ),
    ),
    (
        "our span processor (span_pipe.py, span_wire.py)",
        ("/observability/sdk/span_pipe.py", "/observability/sdk/span_wire.py", "/observability/sdk/export_process.py"),
    ),
    ("our middleware (observability/)", ("/observability/",)),
    ("OTel SDK/API: spans, context, propagation", ("/opentelemetry/",)),
    ("structlog (LogContext)", ("/structlog/",)),
    ("pika (AMQP client)", ("/pika/",)),
    ("dramatiq", ("/dramatiq/",)),
    ("json/uuid/logging", ("/json/", "/uuid.py", "/logging/")),
    ("threading/queue", ("/threading.py", "/queue.py")),
)


def _component(frame: str) -> str:
    for name, needles in _BUCKETS:
        if any(needle in frame for needle in needles):
            return name
    return "other"


def _thread_role(thread: str, frames: list[str]) -> str | None:
    """What a stack's thread is, or None when this stack alone does not tell (non-blocking samples can be cut)."""
    joined = ";".join(frames)
    if ("child_rmq_publish" in joined or "child_burst" in joined) and "/dramatiq/actor.py" in joined:
        return "main thread: the .send() loop (the measured work)"
    if thread == "MainThread" or (frames and frames[0].startswith("<module>")):
        return "setup: main thread imports, setup, waiting (outside the measured work)"
    if "PipeSpanProcessor" in thread or "BatchSpanProcessor" in thread or "/observability/sdk/span_pipe.py" in joined:
        return "span export thread"
    if "ConsumerThread" in joined:
        return "dramatiq consumer thread (AMQP fetch, ack)"
    if "WorkerThread" in joined:
        return "dramatiq worker threads (8)"
    return None


def _read_raw(raw: Path) -> list[tuple[str, str, list[str], int]]:
    """``(thread id, role, frames, count)`` per line; a thread's role is the one most of its stacks show."""
    rows: list[tuple[str, str, list[str], int]] = []
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        head, *frames = stack.split(";")
        tid, _, name = head.partition(": ")
        role = _thread_role(name or head, frames)
        if role is not None:
            votes[tid][role] += int(count_text)
        rows.append((tid, role or "", frames, int(count_text)))
    return [
        (tid, role or (votes[tid].most_common(1)[0][0] if votes[tid] else "other threads"), frames, count)
        for tid, role, frames, count in rows
    ]


def summarize_profile(raw: Path, top: int = 20, us_per_sample: float | None = None) -> str:
    """Summarise py-spy's raw output (``--gil --threads --full-filenames``) for the worker's own threads.

    With ``--gil`` only the thread holding the GIL is sampled, so shares are shares of the one core the
    process can use. Main-thread samples (imports, broker setup) are reported but left out of the shares.
    """
    by_role: Counter[str] = Counter()
    self_by_component: Counter[str] = Counter()
    incl_by_component: Counter[str] = Counter()
    self_by_func: Counter[str] = Counter()
    total = 0
    main = 0
    for _tid, role, frames, count in _read_raw(raw):
        by_role[role] += count
        if role.startswith("setup"):
            main += count
            continue
        total += count
        if frames:
            self_by_component[_component(frames[-1])] += count
            func, _, where = frames[-1].partition(" (")
            self_by_func[f"{func} ({where.rsplit('/site-packages/', 1)[-1].rsplit('/lib/python3', 1)[-1]}"] += count
        for component in {_component(frame) for frame in frames}:
            incl_by_component[component] += count
    if total == 0:
        return "no samples"
    pct = 100 / total

    def cell(n: int) -> str:
        return f"{n * pct:.1f}%" + (f" ({n * us_per_sample:.0f} µs/msg)" if us_per_sample else "")

    out = [f"{total} GIL-holding samples in the measured threads ({main} more in setup, excluded)."]
    if us_per_sample:
        out.append(f"GIL-busy time in the measured threads: {total * us_per_sample:.0f} µs per message.")
    out.append("")
    out += ["By thread:", ""]
    out += [f"- {role}: {cell(n)}" for role, n in by_role.most_common() if not role.startswith("setup")]
    out += ["", "By component (self = innermost frame; inclusive = anywhere on the stack):", ""]
    for name, n in self_by_component.most_common():
        out.append(f"- {name}: self {cell(n)}, inclusive {cell(incl_by_component[name])}")
    out += ["", f"Top {top} functions by self time:", ""]
    out += [f"- {cell(n)}  {func}" for func, n in self_by_func.most_common(top)]
    return "\n".join(out)


def profile(args: argparse.Namespace, sink: Sink) -> None:
    py_spy = args.py_spy or shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("--profile needs py-spy: uv pip install py-spy (not a project dependency), or --py-spy PATH")
    raw = Path(args.profile_out or tempfile.mkstemp(prefix="tracing_profile_", suffix=".txt")[1])
    variant, scenario = args.profile_variant, args.profile_scenario
    if scenario == "rmq_consume":
        published = run_child("rmq_publish", variant, args.messages, sink, args)
        print(f"prefilled {args.messages} messages ({published['rate']:.0f} msg/s)", file=sys.stderr)
    # --gil: sample only the thread holding the GIL (the process's one usable core); --nonblocking: do not
    # stop the process per sample (blocking sampling slowed the consumer about 3x).
    prefix = [py_spy, "record", "--gil", "--threads", "--full-filenames", "--nonblocking", "--rate", str(args.rate)]
    prefix += ["--format", "raw", "--output", str(raw), "--"]
    measured = run_child(scenario, variant, args.messages, sink, args, prefix=prefix)
    print(f"{scenario} {variant} under py-spy: {measured['rate']:.0f} msg/s; raw profile: {raw}")
    print(summarize_profile(raw, us_per_sample=1e6 / (args.rate * args.messages)))


# ---------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command line; ``bench/suite.py`` builds its arguments with it too."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--messages", type=int, default=20_000, help="messages per measurement (20,000)")
    parser.add_argument("-r", "--rounds", type=int, default=4, help="interleaved rounds (4)")
    parser.add_argument("--burst", type=int, default=20_000, help="sends in the span-loss burst (20,000)")
    parser.add_argument(
        "--scenarios", default="stub_consume,rmq,burst", help="comma list of stub_consume, rmq, burst (all)"
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma list of plain, ours, inline, sdk_default, no_export (all; plain first)",
    )
    parser.add_argument("--amqp-url", default=os.environ.get("BENCH_AMQP_URL", DEFAULT_AMQP_URL))
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one measurement may take")
    parser.add_argument("--out", help="append raw results (JSON lines) to this file")
    parser.add_argument("--profile", action="store_true", help="profile ours, RabbitMQ consume, with py-spy")
    parser.add_argument("--profile-variant", choices=VARIANTS, default="ours", help="variant to profile (ours)")
    parser.add_argument(
        "--profile-scenario", choices=("rmq_consume", "rmq_publish", "stub_consume"), default="rmq_consume"
    )
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second (200)")
    parser.add_argument("--profile-out", help="where py-spy writes its raw profile (a temp file by default)")
    parser.add_argument("--py-spy", help="path to py-spy (default: on PATH or next to this Python)")
    parser.add_argument("--summarize-profile", metavar="RAW", help="only summarise a py-spy raw profile")
    parser.add_argument("--rss-breakdown", action="store_true", help="VmRSS after each import step of ours")
    parser.add_argument("--summarize", metavar="JSONL", help="only print the report for a --out file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    if args.child:
        scenario, variant = args.child.split(":")
        print(json.dumps(CHILDREN[scenario](variant, args.messages, args)), flush=True)
        return
    if args.summarize_profile:
        print(summarize_profile(Path(args.summarize_profile), us_per_sample=1e6 / (args.rate * args.messages)))
        return
    if args.summarize:
        with open(args.summarize) as data:
            loaded = [json.loads(line) for line in data if line.strip()]
        args.rounds = len({x["round"] for x in loaded})
        args.messages = next((x["n"] for x in loaded if x["scenario"] != "burst"), args.messages)
        args.burst = next((x["n"] for x in loaded if x["scenario"] == "burst"), args.burst)
        print(report(loaded, args))
        return

    print(describe_machine(machine_facts()))
    sink = Sink()
    try:
        if args.profile:
            profile(args, sink)
            return
        if args.rss_breakdown:
            steps = run_child("rss_imports", "ours", 0, sink, args)["rss_steps_mib"]
            previous = steps[0][1]
            for name, mib in steps:
                print(f"{mib:7.1f} MiB  {mib - previous:+5.1f}  {name}")
                previous = mib
            return
        started = time.monotonic()
        with open(args.out, "a") if args.out else open(os.devnull, "w") as out:
            results = rounds(args, sink, out)
        print(f"\ntotal {time.monotonic() - started:.0f} s\n")
        print(report(results, args))
    finally:
        sink.close()


if __name__ == "__main__":
    main()
