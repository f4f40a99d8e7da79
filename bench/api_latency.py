"""Producer API benchmark: POST -> actor start latency at a fixed rate, and API requests/s, traced vs. untraced.

Processes, started fresh for every variant in every round (the variant that goes first alternates per round):

* the API: ``uvicorn --factory bench.workload.api_app:create_bench_app`` (one process, uvicorn's defaults as in
  ``make api``). The app is ``api.app.create_app`` around the real broker (``actors.broker``: RabbitMQ with
  publish confirms, our tracing installed), with its ``orders`` route sending to a bench actor on queue
  ``bench_api`` instead of ``place_order``; the body is a real ``PlaceOrder``. ``broker.enqueue`` is wrapped
  to time each publish (with its send span and confirm); ``POST /bench/enqueue-times`` hands the times over.
* one worker: ``dramatiq bench.workload.api_app:setup_worker --processes 1 --threads 8 --queues bench_api``.
  The bench actor's first statement is ``time.time()``, stored in Redis (db 14 by default) under its message id.
* ``python -m otlp_receiver.counting``, one OTLP/HTTP receiver for the whole run.

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

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness.api_rounds import build_parser, rounds
from bench.harness.machine import describe_machine, machine_facts
from bench.harness.sink import Sink
from bench.report.api import report
from bench.report.results import read_jsonl

__all__ = ["main"]

_PACKAGES = ("fastapi", "uvicorn", "httpx", "dramatiq", "pika", "opentelemetry-sdk")


def main(argv: list[str] | None = None) -> None:
    """Every round (or the report of an ``--out`` file), the report on stdout."""
    args = build_parser(__doc__).parse_args(argv)

    if args.summarize:
        print(report(read_jsonl(args.summarize)))
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


if __name__ == "__main__":
    main()
