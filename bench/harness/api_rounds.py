"""The producer API benchmark's rounds: both variants per round, the first alternating, fresh processes each.

Per round and variant, :func:`run_variant` starts a :class:`~bench.harness.api_stack.Stack`, warms it up, waits
until it is idle, measures latency at each ``--rates`` value, stops the worker and measures closed-loop
throughput for each ``--clients`` value; the spans the sink received go on the variant's last result.
:func:`build_parser` is the benchmark's command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness.api_load import measure_latency, measure_throughput, redis_client, warm_up
from bench.harness.api_stack import Stack, delete_bench_queues
from bench.harness.rabbitmq import DEFAULT_AMQP_URL
from bench.harness.sink import Sink
from bench.workload.api_app import DEFAULT_REDIS_URL, REDIS_ENV, VARIANTS

__all__ = ["build_parser", "rounds", "run_variant"]


def run_variant(variant: str, r: int, args: argparse.Namespace, sink: Sink, logdir: Path) -> list[dict[str, Any]]:
    tag = f"r{r}-{variant}"
    delete_bench_queues(args.amqp_url)
    sink.reset()
    stack = Stack(variant, args, sink if variant == "traced" else None, logdir, tag)
    results: list[dict[str, Any]] = []
    settled = 0.0
    try:
        stack.start()
        warm_up(stack, args, tag)
        settled = stack.settle()
        for rate in args.rates:
            results.append(measure_latency(stack, rate, args, f"{tag}-{rate:g}"))
        stack.stop_worker()
        for clients in args.clients:
            results.append(measure_throughput(stack, clients, args, f"{tag}-tp{clients}"))
    finally:
        stack.close()
        redis_client(args.redis_url).delete(stack.key)
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
        delete_bench_queues(args.amqp_url)
    return results


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """The command line of ``bench/api_latency.py``; the suite builds its arguments with it too."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
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
