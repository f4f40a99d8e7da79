"""Paired benchmark: plain Dramatiq against seven ways of tracing it, in one run and one table.

The variants (``bench/overhead_variants.py``): ``plain``; ``sdk_floor`` (a minimal middleware making SDK spans,
no span processor); ``minimal_bsp`` (the same with the SDK's ``BatchSpanProcessor`` and OTLP/HTTP exporter);
``tracing`` (our ``Tracing`` alone, export from ``observability.sdk.configure_tracing``: an export process);
``tracing_inline`` (the same with the SDK's batch processor and exporter in the worker); ``tracing_full``
(``Tracing`` + ``LogContext`` + ``Metrics``); ``broker_noexport`` and ``broker_shipped`` (our broker,
``actors.broker``, with exporters off, and as shipped). Every plain-broker variant publishes with
``confirm_delivery=True``, as our broker does.

The scenarios (``bench/overhead_child.py``), each measurement in a fresh child process: RabbitMQ consume (the
headline) and publish with confirms, StubBroker consume, an always-failing actor (every message dead-lettered),
the worker's peak RSS, and for the variants that export, a 20,000-message burst checked for lost spans. Spans go
over real OTLP/HTTP to ``otlp_receiver.counting``, a separate process that decodes and counts them. One worker
process, 8 threads. Also timed: ``import observability`` and ``import actors`` (``bench/import_cost.py``).

Each round runs every variant once per scenario, the first variant rotating per round. Ratios are paired:
variant rate / plain rate within one round, summarised as median [min, max] (``bench/overhead_report.py``).

Usage::

    uv run --locked python bench/tracing_overhead.py                    # 5 rounds of 4,000, every variant
    uv run --locked python bench/tracing_overhead.py -n 1000 -r 1       # a quick look
    uv run --locked python bench/tracing_overhead.py --variants plain,tracing --scenarios rmq
    uv run --locked python bench/tracing_overhead.py --out raw.jsonl    # also keep raw results
    uv run --locked python bench/tracing_overhead.py --summarize raw.jsonl
    uv run --locked python bench/tracing_overhead.py --profile --profile-variant broker_shipped
    uv run --locked python bench/tracing_overhead.py --profile --profile-variant plain --profile-scenario fail_consume

``--profile`` needs py-spy (``uv pip install py-spy``, or ``--py-spy PATH``); it is not a project dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DEFAULT_AMQP_URL, ROOT, Sink, describe_machine, machine_facts, read_jsonl
from bench.overhead_variants import EXPORTING, VARIANTS, child_env

__all__ = ["EXPORTING", "SCENARIOS", "VARIANTS", "build_parser", "estimate_seconds", "imports", "rounds", "run_child"]

#: ``--scenarios`` names: ``rmq`` is publish then consume (the consume child needs the publish child's queue).
SCENARIOS = ("rmq", "stub_consume", "fail_consume", "burst", "imports")
_RABBITMQ = ("rmq_publish", "rmq_consume", "fail_consume")


def run_child(
    scenario: str, variant: str, n: int, sink: Sink, args: argparse.Namespace, prefix: list[str] | None = None
) -> dict[str, Any]:
    """Measure ``scenario`` for ``variant`` in a fresh process; its result plus the spans the sink received."""
    from bench.overhead_child import CHILDREN

    if scenario not in CHILDREN:
        raise SystemExit(f"unknown scenario {scenario!r}; choose from {', '.join(CHILDREN)}")
    sink.reset()
    workdir = Path(args.workdir)
    log, result_file = workdir / f"{scenario}-{variant}.log", workdir / f"{scenario}-{variant}.json"
    result_file.unlink(missing_ok=True)
    env = child_env(
        variant, rabbitmq=scenario in _RABBITMQ, amqp_url=args.amqp_url, sink_base=sink.base, workdir=str(workdir)
    )
    cmd = [*(prefix or []), sys.executable, str(Path(__file__).resolve()), "--child", f"{scenario}:{variant}"]
    cmd += ["--messages", str(n), "--endpoint", sink.endpoint, "--amqp-url", args.amqp_url]
    cmd += ["--timeout", str(args.timeout), "--result", str(result_file)]
    with log.open("w") as output:
        proc = subprocess.run(
            cmd, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, timeout=args.timeout + 120, check=False
        )
    if proc.returncode != 0 or not result_file.exists():
        tail = log.read_text()[-3000:]
        raise SystemExit(f"{scenario}:{variant} failed ({proc.returncode}), log {log}:\n{tail}")
    result: dict[str, Any] = json.loads(result_file.read_text())
    log.unlink()
    received = sink.count()
    result.update(scenario=scenario, variant=variant, spans_received=received["spans"], by_name=received["by_name"])
    return result


def _steps(scenarios: list[str], order: tuple[str, ...], args: argparse.Namespace) -> list[tuple[str, str, int]]:
    steps: list[tuple[str, str, int]] = []
    for scenario in scenarios:
        for variant in order:
            if scenario == "rmq":
                steps += [("rmq_publish", variant, args.messages), ("rmq_consume", variant, args.messages)]
            elif scenario == "burst":
                if variant in EXPORTING:
                    steps.append(("burst", variant, args.burst))
            elif scenario != "imports":
                steps.append((scenario, variant, args.messages))
    return steps


def rounds(args: argparse.Namespace, sink: Sink, out: Any) -> list[dict[str, Any]]:
    """Every round, every variant, every scenario; then the import timings. Each result is also written to
    ``out`` as one JSON line."""
    results: list[dict[str, Any]] = []
    scenarios = [s for s in args.scenarios.split(",") if s]
    if unknown := set(scenarios) - set(SCENARIOS):
        raise SystemExit(f"unknown scenario(s) {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    variants = tuple(v for v in args.variants.split(",") if v)
    if unknown := set(variants) - set(VARIANTS):
        raise SystemExit(f"unknown variant(s) {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="tracedq-bench-overhead-")

    def keep(result: dict[str, Any]) -> None:
        results.append(result)
        if out is not None:
            out.write(json.dumps(result) + "\n")
            out.flush()

    for r in range(args.rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        print(f"round {r + 1}/{args.rounds}, order {', '.join(order)}", file=sys.stderr, flush=True)
        for scenario, variant, n in _steps(scenarios, order, args):
            result = run_child(scenario, variant, n, sink, args)
            result["round"] = r
            keep(result)
            lost = result.get("spans_created", result.get("spans_expected", 0)) - result["spans_received"]
            print(
                f"  {scenario:<13} {variant:<16} {result['rate']:>9.0f} msg/s  cpu {result['cpu_us']:6.1f} us/msg"
                f"  spans {result['spans_received']}/{result.get('spans_expected', 0)} (lost {lost})",
                file=sys.stderr,
                flush=True,
            )
    if "imports" in scenarios:
        for result in imports(args, sink):
            keep(result)
    shutil.rmtree(Path(args.workdir) / "heartbeats", ignore_errors=True)
    return results


def imports(args: argparse.Namespace, sink: Sink) -> list[dict[str, Any]]:
    """``import observability`` and ``import actors`` (configured as ``broker_shipped``), fresh processes."""
    from bench.import_cost import import_result

    env = child_env("broker_shipped", rabbitmq=True, amqp_url=args.amqp_url, sink_base=sink.base, workdir=args.workdir)
    found = []
    for module in ("observability", "actors"):
        result = import_result(module, env, args.import_repeats)
        found.append(result)
        print(
            f"  import {module:<14} {min(result['seconds']):.3f} s (min of {len(result['seconds'])})", file=sys.stderr
        )
    return found


def profile(args: argparse.Namespace, sink: Sink) -> None:
    """One child under ``py-spy record --gil``, then the summary (``bench/pyspy.py``)."""
    from bench.pyspy import summarize_profile

    py_spy = args.py_spy or shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("--profile needs py-spy: uv pip install py-spy (not a project dependency), or --py-spy PATH")
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="tracedq-bench-overhead-")
    raw = Path(args.profile_out or tempfile.mkstemp(prefix="tracing_profile_", suffix=".txt")[1])
    variant, scenario = args.profile_variant, args.profile_scenario
    n = args.burst if scenario == "burst" else args.messages
    if scenario == "rmq_consume":
        published = run_child("rmq_publish", variant, n, sink, args)
        print(f"prefilled {n} messages ({published['rate']:.0f} msg/s)", file=sys.stderr)
    # --gil: sample only the thread holding the GIL (the process's one usable core); --nonblocking: do not
    # stop the process per sample (blocking sampling slowed the consumer about 3x).
    prefix = [py_spy, "record", "--gil", "--threads", "--full-filenames", "--nonblocking", "--rate", str(args.rate)]
    prefix += ["--format", "raw", "--output", str(raw), "--"]
    measured = run_child(scenario, variant, n, sink, args, prefix=prefix)
    print(f"{scenario} {variant} under py-spy: {measured['rate']:.0f} msg/s; raw profile: {raw}")
    print(summarize_profile(raw, us_per_sample=1e6 / (args.rate * n)))


def estimate_seconds(p: dict[str, Any]) -> float:
    """Rough seconds of a run with ``bench/suite.py``'s sizes ``p`` on the 2-core VM."""
    # Per child about 2.3 s of start-up and imports; per message: publish with confirms ~1.2 ms, consume ~0.4 ms,
    # StubBroker send + consume ~0.45 ms, the failing actor ~1.7 ms (its traceback is logged); burst ~0.14 ms.
    variants = p["variants"].split(",")
    exporting = len(set(variants) & set(EXPORTING))
    n, per_child = p["messages"], 2.3
    per_variant = 4 * per_child + n * (1.2e-3 + 0.4e-3 + 0.45e-3 + 1.7e-3)
    burst = exporting * (per_child + p["burst"] * 0.14e-3)
    imports = 2 * (p["import_repeats"] + 1) * 1.2
    return float(p["rounds"] * (len(variants) * per_variant + burst) + imports)


def build_parser() -> argparse.ArgumentParser:
    """The command line; ``bench/suite.py`` builds its arguments with it too."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--messages", type=int, default=4_000, help="messages per measurement (4,000)")
    parser.add_argument("-r", "--rounds", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--burst", type=int, default=20_000, help="sends in the span-loss burst (20,000)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma list of {', '.join(SCENARIOS)}")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--import-repeats", type=int, default=7, help="fresh processes per import timing (7)")
    parser.add_argument("--amqp-url", default=os.environ.get("BENCH_AMQP_URL", DEFAULT_AMQP_URL))
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds one measurement may take")
    parser.add_argument("--workdir", help="children's logs and heartbeat files (a temporary folder by default)")
    parser.add_argument("--out", help="append raw results (JSON lines) to this file")
    parser.add_argument("--summarize", metavar="JSONL", help="only print the report for a --out file")
    parser.add_argument("--profile", action="store_true", help="profile one variant and scenario with py-spy")
    parser.add_argument("--profile-variant", choices=VARIANTS, default="broker_shipped")
    parser.add_argument(
        "--profile-scenario",
        choices=("rmq_consume", "rmq_publish", "stub_consume", "fail_consume", "burst"),
        default="rmq_consume",
    )
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second (200)")
    parser.add_argument("--profile-out", help="where py-spy writes its raw profile (a temp file by default)")
    parser.add_argument("--py-spy", help="path to py-spy (default: on PATH or next to this Python)")
    parser.add_argument("--summarize-profile", metavar="RAW", help="only summarise a py-spy raw profile")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.child:
        from bench.overhead_child import CHILDREN

        scenario, variant = args.child.split(":")
        result = CHILDREN[scenario](variant, args.messages, args)
        Path(args.result).write_text(json.dumps(result))
        return
    from bench.overhead_report import overhead_section
    from bench.pyspy import summarize_profile

    if args.summarize_profile:
        print(summarize_profile(Path(args.summarize_profile), us_per_sample=1e6 / (args.rate * args.messages)))
        return
    if args.summarize:
        print("\n".join(overhead_section(read_jsonl(args.summarize))))
        return
    print(describe_machine(machine_facts()))
    sink = Sink()
    try:
        if args.profile:
            profile(args, sink)
            return
        started = time.monotonic()
        with open(args.out, "a") if args.out else open(os.devnull, "w") as out:
            results = rounds(args, sink, out)
        print(f"\ntotal {time.monotonic() - started:.0f} s\n")
        print("\n".join(overhead_section(results)))
    finally:
        sink.close()


if __name__ == "__main__":
    main()
