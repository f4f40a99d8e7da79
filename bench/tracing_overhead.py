"""Paired benchmark: plain Dramatiq against seven ways of tracing it, in one run and one table.

The variants (``bench/workload/overhead_variants.py``): ``plain``; ``sdk_floor`` (a minimal middleware making SDK spans,
no span processor); ``minimal_bsp`` (the same with the SDK's ``BatchSpanProcessor`` and OTLP/HTTP exporter);
``tracing`` (our ``Tracing`` alone, export from ``observability.sdk.configure_tracing``: an export process);
``tracing_inline`` (the same with the SDK's batch processor and exporter in the worker); ``tracing_full``
(``Tracing`` + ``LogContext`` + ``Metrics``); ``broker_noexport`` and ``broker_shipped`` (our broker,
``actors.broker``, with exporters off, and as shipped). Every plain-broker variant publishes with
``confirm_delivery=True``, as our broker does.

The scenarios (``bench/harness/overhead_child.py``), each measurement in a fresh child process: RabbitMQ consume (the
headline) and publish with confirms, StubBroker consume, an always-failing actor (every message dead-lettered),
the worker's peak RSS, and for the variants that export, a 20,000-message burst checked for lost spans. Spans go
over real OTLP/HTTP to ``python -m otlp_receiver.counting``, a separate process that decodes and counts them. One worker
process, 8 threads. Also timed: ``import observability`` and ``import actors`` (``bench/harness/import_cost.py``).

Each round runs every variant once per scenario, the first variant rotating per round. Ratios are paired:
variant rate / plain rate within one round, summarised as median [min, max] (``bench/report/overhead.py``).

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

import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness.machine import describe_machine, machine_facts
from bench.harness.overhead_rounds import build_parser, profile, rounds
from bench.harness.sink import Sink
from bench.report.results import read_jsonl

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    args = build_parser(__doc__).parse_args(argv)
    if args.child:
        from bench.harness.overhead_child import CHILDREN

        scenario, variant = args.child.split(":")
        result = CHILDREN[scenario](variant, args.messages, args)
        Path(args.result).write_text(json.dumps(result))
        return
    from bench.report.overhead import overhead_section
    from bench.report.pyspy import summarize_profile

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
