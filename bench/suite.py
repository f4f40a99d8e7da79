"""``make bench`` = ``python -m bench``: every benchmark in one run, raw results kept, docs/benchmarks.md regenerated.

Parts (``--only`` picks some, comma-separated), in this order:

* ``overhead``: ``bench/tracing_overhead.py``'s paired, interleaved rounds, plain Dramatiq against seven traced
  variants (a minimal SDK middleware without and with export, our ``Tracing`` alone and with ``LogContext`` +
  ``Metrics``, our broker without export and as shipped): RabbitMQ consume and publish (confirms), StubBroker
  consume, an always-failing actor, worker peak RSS, the 20,000-message span-loss burst, import times.
* ``api``: ``bench/api_latency.py`` at one fixed rate: POST -> actor start p50/p99, traced vs untraced.
* ``rss``: one real worker process through 100,000 messages, VmRSS every 10,000 (``bench/harness/scaling.py``).
* ``processes``: real ``dramatiq -p 1`` vs ``-p 2`` trees on a filled queue, no-op and CPU-bound actors.
* ``sweep``: worker threads and ``dramatiq_queue_prefetch`` for a CPU-bound and an I/O-bound actor:
  throughput, consumer latency at a fixed load, and the settings recommended per kind.

RabbitMQ runs go to a vhost of their own (``--vhost``, created and deleted with ``rabbitmqctl``) unless
``--amqp-url`` names one. Raw results: ``.bench/<UTC time>.jsonl`` (one JSON object per measurement, each with
its ``part``), with that run's report, plot and worker logs beside it. A full run rewrites the block between
the markers in docs/benchmarks.md and docs/bench-sweep.png; ``--quick`` (small sizes, one round) writes only to
``.bench/`` unless ``--docs``. ``--report FILE.jsonl`` renders a past run again without measuring.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness.machine import machine_facts
from bench.harness.processes import ROOT
from bench.harness.rabbitmq import DEFAULT_AMQP_URL, close_vhost, open_vhost
from bench.harness.sink import Sink
from bench.harness.suite_parts import PARTS, PRESETS, RUNNERS, STARTED, estimate_seconds, log
from bench.report.document import write_outputs
from bench.report.results import read_jsonl

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """``python -m bench``'s command line: which parts, where, and every size of :data:`PRESETS`."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes: small n, one round, short windows")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)} (all)")
    parser.add_argument("--docs", action=argparse.BooleanOptionalAction, help="rewrite docs/ (default: full runs)")
    parser.add_argument("--report", metavar="JSONL", help="render the report of a past run; measure nothing")
    parser.add_argument("--amqp-url", help="RabbitMQ URL to use as is (default: a vhost of our own, see --vhost)")
    parser.add_argument("--vhost", default="tracedq-bench", help="vhost created and deleted around the run")
    parser.add_argument("--out-dir", type=Path, default=ROOT / ".bench", help="raw results and logs (.bench/)")
    for key, value in PRESETS["full"].items():
        flag = "--" + key.replace("_", "-")
        parser.add_argument(flag, type=type(value), help=f"full: {value}, quick: {PRESETS['quick'][key]}")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run the parts asked for (or render a past run), then write the report."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.report:
        raw = Path(args.report)
        print(write_outputs(read_jsonl(raw), raw, docs_dir=ROOT / "docs" if args.docs else None, log=log))
        return
    parts = [part for part in args.only.split(",") if part]
    if unknown := set(parts) - set(PARTS):
        raise SystemExit(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    preset = PRESETS["quick" if args.quick else "full"]
    params = {key: getattr(args, key) if getattr(args, key) is not None else value for key, value in preset.items()}
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ") + ("-quick" if args.quick else "")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    raw, workdir = args.out_dir / f"{stamp}.jsonl", args.out_dir / stamp
    vhost_url = None if args.amqp_url else open_vhost(args.vhost, log)
    url = args.amqp_url or vhost_url or DEFAULT_AMQP_URL
    results: list[dict[str, Any]] = []
    command = " ".join(["python -m bench", *argv])
    if os.environ.get("MAKELEVEL") and not argv:
        command = "make bench"

    with raw.open("a") as out:

        def emit(result: dict[str, Any]) -> None:
            results.append(result)
            out.write(json.dumps(result) + "\n")
            out.flush()

        log(f"parts: {', '.join(parts)}; RabbitMQ {url}; raw results {raw}")
        log(f"expected to take about {estimate_seconds(params, parts) / 60:.1f} min (longer on a busy machine)")
        sink = Sink()
        try:
            started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            meta = {"part": "meta", "command": command, "quick": args.quick, "started": started, "params": params}
            meta["raw"] = str(raw.relative_to(ROOT)) if raw.is_relative_to(ROOT) else str(raw)
            emit({**meta, "facts": machine_facts(amqp_url=url)})
            for part in parts:
                log(f"{part} ...")
                begin, load = time.monotonic(), os.getloadavg()[0]
                try:
                    RUNNERS[part](params, url, sink, workdir, emit)
                # One broken part must not cost the others; the scripts raise SystemExit when a child fails.
                # Ctrl-C (KeyboardInterrupt) still stops the run.
                except (Exception, SystemExit) as exc:
                    log(f"{part} failed: {exc!r}")
                    emit({"part": "error", "name": part, "error": repr(exc)[:500]})
                seconds = time.monotonic() - begin
                emit({"part": "timing", "name": part, "seconds": seconds, "load": [load, os.getloadavg()[0]]})
                log(f"{part} done in {seconds:.0f} s")
            emit({"part": "end", "seconds": time.monotonic() - STARTED, "loadavg": list(os.getloadavg())})
        finally:
            sink.close()
            if vhost_url:
                close_vhost(args.vhost)
    docs = args.docs if args.docs is not None else not args.quick
    print(write_outputs(results, raw, docs_dir=ROOT / "docs" if docs else None, log=log))
