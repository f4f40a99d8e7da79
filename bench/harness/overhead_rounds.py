"""The overhead benchmark's rounds: every variant, every scenario, each measurement in a fresh child process.

The parent side of ``bench/tracing_overhead.py``: :func:`child_env` gives a child its variant's environment,
:func:`run_child` runs one measurement (``tracing_overhead.py --child``, ``bench/harness/overhead_child.py``) and
reads what the sink received, :func:`rounds` interleaves them (the first variant rotating per round), then the
import timings; :func:`profile` runs one child under py-spy. :func:`build_parser` is the benchmark's command line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.harness.environment import migrated_sqlite, passed_env
from bench.harness.processes import ROOT
from bench.harness.rabbitmq import DEFAULT_AMQP_URL
from bench.harness.sink import Sink
from bench.workload.overhead_variants import BROKER_VARIANTS, EXPORTING, VARIANTS

__all__ = [
    "SCENARIOS",
    "build_parser",
    "child_env",
    "estimate_seconds",
    "imports",
    "profile",
    "rounds",
    "run_child",
]

#: ``--scenarios`` names: ``rmq`` is publish then consume (the consume child needs the publish child's queue).
SCENARIOS = ("rmq", "stub_consume", "fail_consume", "burst", "imports")
_RABBITMQ = ("rmq_publish", "rmq_consume", "fail_consume")
#: The entry script, whose ``--child`` mode runs one measurement (``bench/harness/overhead_child.py``).
_ENTRY = Path(__file__).resolve().parents[1] / "tracing_overhead.py"


def child_env(variant: str, *, rabbitmq: bool, amqp_url: str, sink_base: str, workdir: str) -> dict[str, str]:
    """The environment of a child measuring ``variant``: settings and ``OTEL_*`` as a deployment would set them."""
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    env = passed_env()
    if variant in ("tracing", "tracing_inline", "tracing_full", "broker_shipped"):
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink_base  # the exporter appends /v1/traces
    if variant in BROKER_VARIANTS:
        env["BROKER_URL"] = amqp_url if rabbitmq else "memory://"
        env["WORKER_HEARTBEAT_DIR"] = os.path.join(workdir, "heartbeats")
        env["DATABASE_URL"] = migrated_sqlite(Path(workdir) / "bench.db")
    if variant == "broker_noexport":
        env.update(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    return env


def run_child(
    scenario: str, variant: str, n: int, sink: Sink, args: argparse.Namespace, prefix: list[str] | None = None
) -> dict[str, Any]:
    """Measure ``scenario`` for ``variant`` in a fresh process; its result plus the spans the sink received."""
    from bench.harness.overhead_child import CHILDREN

    if scenario not in CHILDREN:
        raise SystemExit(f"unknown scenario {scenario!r}; choose from {', '.join(CHILDREN)}")
    sink.reset()
    workdir = Path(args.workdir)
    log, result_file = workdir / f"{scenario}-{variant}.log", workdir / f"{scenario}-{variant}.json"
    result_file.unlink(missing_ok=True)
    env = child_env(
        variant, rabbitmq=scenario in _RABBITMQ, amqp_url=args.amqp_url, sink_base=sink.base, workdir=str(workdir)
    )
    cmd = [*(prefix or []), sys.executable, str(_ENTRY), "--child", f"{scenario}:{variant}"]
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
    from bench.harness.import_cost import import_result

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
    """One child under ``py-spy record --gil``, then the summary (``bench/report/pyspy.py``)."""
    from bench.report.pyspy import summarize_profile

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
    """Rough seconds of a run with the suite's sizes ``p`` (``bench/harness/suite_parts.py``) on the 2-core VM."""
    # Per child about 2.3 s of start-up and imports; per message: publish with confirms ~1.2 ms, consume ~0.4 ms,
    # StubBroker send + consume ~0.45 ms, the failing actor ~1.7 ms (its traceback is logged); burst ~0.14 ms.
    variants = p["variants"].split(",")
    exporting = len(set(variants) & set(EXPORTING))
    n, per_child = p["messages"], 2.3
    per_variant = 4 * per_child + n * (1.2e-3 + 0.4e-3 + 0.45e-3 + 1.7e-3)
    burst = exporting * (per_child + p["burst"] * 0.14e-3)
    imports = 2 * (p["import_repeats"] + 1) * 1.2
    return float(p["rounds"] * (len(variants) * per_variant + burst) + imports)


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """The command line of ``bench/tracing_overhead.py``; the suite builds its arguments with it too."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
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
