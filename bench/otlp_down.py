"""Throughput with the OTLP endpoint down vs a working one (issue 7, fault 4: "within noise of the normal run").

Variants of one workload, each measurement in a fresh subprocess, in interleaved rounds (the first variant
rotating per round):

* ``sink``: spans go to ``python -m otlp_receiver.counting``, a separate receiver process that decodes and counts them.
* ``refused``: the endpoint is a loopback port with a socket bound but not listening (connection refused).
* ``blackhole``: the endpoint accepts connections (a listening socket that never accepts) and never answers,
  so an export attempt lasts the exporter's whole timeout (10 s).

Workload (``consume``, ``bench/workload/otlp_down_broker.py``): a StubBroker with Dramatiq's default middleware
and ``observability.install(broker, Tracing(tracer_provider=...))``, the provider exporting through
``span_processor_from_env`` (our ``PipeSpanProcessor``: an export process with the SDK's OTLP/HTTP exporter), as a
deployed worker does. N messages to a no-op actor are sent untimed, the send spans flushed (bounded by the
flush's timeout), then ``Worker(8 threads)`` is timed from start to ``join``. Each child reports its rate, its
VmHWM and its processor's counts.

Usage::

    .venv/bin/python bench/otlp_down.py                 # 5 rounds of N = 10,000
    .venv/bin/python bench/otlp_down.py -n 4000 -r 2    # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness.otlp_down import Endpoints, child, run_child
from bench.report.otlp_down import report
from bench.workload.otlp_down_broker import VARIANTS

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """The interleaved rounds (or, with ``--child``, one measurement), then the table."""
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
