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
import random
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import api_latency, tracing_overhead
from bench.harness.common import DEFAULT_AMQP_URL, ROOT, Sink, machine_facts, read_jsonl
from bench.harness.scaling import Cell, cells_for_sweep, rss, run_cell
from bench.report.document import render, splice
from bench.report.plot import plot

__all__ = ["PARTS", "PRESETS", "estimate_seconds", "main", "write_outputs"]

PARTS = ("overhead", "api", "rss", "processes", "sweep")
#: Sizes of a full run (about 25 minutes on the 2-core VM) and of ``--quick`` (a smoke test, 4-5 minutes).
PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "messages": 4_000, "rounds": 5, "burst": 20_000, "variants": ",".join(tracing_overhead.VARIANTS),
        "import_repeats": 7,
        "api_rounds": 2, "api_rate": 100.0, "api_seconds": 10.0,
        "rss_messages": 100_000, "rss_step": 10_000,
        "processes_rounds": 2, "processes_kinds": "noop,cpu", "processes_threads": 8,
        "window": 3.0, "warmup": 0.5, "latency_seconds": 4.0, "sweep_load": 100.0,
        "sweep_threads": "1,2,4,8,16", "sweep_prefetch": "1,T,2T,8T", "sweep_prefetch_threads": 8,
        "sweep_grid": "cross",
    },
    "quick": {
        "messages": 300, "rounds": 1, "burst": 2_000, "variants": ",".join(tracing_overhead.VARIANTS),
        "import_repeats": 2,
        "api_rounds": 1, "api_rate": 50.0, "api_seconds": 3.0,
        "rss_messages": 10_000, "rss_step": 1_000,
        "processes_rounds": 1, "processes_kinds": "noop,cpu", "processes_threads": 8,
        "window": 1.5, "warmup": 0.5, "latency_seconds": 2.0, "sweep_load": 100.0,
        "sweep_threads": "1,4", "sweep_prefetch": "1,2T", "sweep_prefetch_threads": 4,
        "sweep_grid": "cross",
    },
}  # fmt: skip
_STARTED = time.monotonic()


def log(message: str) -> None:
    elapsed = int(time.monotonic() - _STARTED)
    print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {message}", file=sys.stderr, flush=True)


class _PartWriter:
    """The ``out`` file ``tracing_overhead.rounds`` writes JSON lines to, turned into tagged results."""

    def __init__(self, emit: Callable[[dict[str, Any]], None]) -> None:
        self.emit = emit

    def write(self, line: str) -> None:
        self.emit({"part": "overhead", **json.loads(line)})

    def flush(self) -> None:
        pass


def _overhead(p: dict[str, Any], url: str, sink: Sink, workdir: Path, emit: Callable[..., None]) -> None:
    argv = ["-n", str(p["messages"]), "-r", str(p["rounds"]), "--burst", str(p["burst"]), "--amqp-url", url]
    argv += ["--variants", p["variants"], "--import-repeats", str(p["import_repeats"])]
    (workdir / "overhead").mkdir(parents=True, exist_ok=True)
    args = tracing_overhead.build_parser().parse_args([*argv, "--workdir", str(workdir / "overhead")])
    tracing_overhead.rounds(args, sink, _PartWriter(emit))


def _api(p: dict[str, Any], url: str, sink: Sink, workdir: Path, emit: Callable[..., None]) -> None:
    argv = ["-r", str(p["api_rounds"]), "--rates", str(p["api_rate"]), "--latency-seconds", str(p["api_seconds"])]
    args = api_latency.build_parser().parse_args([*argv, "--amqp-url", url])
    args.clients = []  # latency at a fixed rate only; bench/api_latency.py alone also measures closed-loop req/s
    (workdir / "api").mkdir(parents=True, exist_ok=True)
    tagged = {"part": "api", "latency_seconds": p["api_seconds"]}
    api_latency.rounds(args, sink, workdir / "api", lambda res: emit({**tagged, **res}))


def _rss(p: dict[str, Any], url: str, sink: Sink, workdir: Path, emit: Callable[..., None]) -> None:
    result = rss(p["rss_messages"], step=p["rss_step"], amqp_url=url, sink=sink, workdir=workdir / "rss", progress=log)
    emit({"part": "rss", **result})


def _describe(res: dict[str, Any]) -> str:
    text = f"{res['kind']:<4} -p {res['processes']} -t {res['threads']:<2} prefetch {res['prefetch']:<3}"
    text += f" {res['rate'] or 0:8,.0f} msg/s" + (" (drained)" if res.get("drained") else "")
    if "lat_p95_ms" in res:
        text += f", latency p50/p95 {res['lat_p50_ms']:.1f}/{res['lat_p95_ms']:.1f} ms"
        text += f" (not started {res['censored']})" if res.get("censored") else ""
    return text + f", startup {res['startup_s']:.1f} s"


def _cells(
    part: str, cells: list[tuple[int, Cell]], url: str, sink: Sink, workdir: Path, emit: Callable[..., None]
) -> None:
    """Run each ``(round, cell)``; results tagged with the part and round."""
    for i, (r, cell) in enumerate(cells):
        tag = f"{part}-{i:02d}-{cell.kind}-p{cell.processes}-t{cell.threads}-q{cell.prefetch}"
        res = run_cell(cell, amqp_url=url, sink=sink, workdir=workdir / part, tag=tag)
        emit({"part": part, "round": r, **res})
        log(f"  {part} {i + 1}/{len(cells)}: {_describe(res)}")


def _processes(p: dict[str, Any], url: str, sink: Sink, workdir: Path, emit: Callable[..., None]) -> None:
    common = {"window": p["window"], "warmup": p["warmup"]}
    cells: list[tuple[int, Cell]] = []
    for r in range(p["processes_rounds"]):
        for kind in p["processes_kinds"].split(","):
            for n in (1, 2) if r % 2 == 0 else (2, 1):
                cells.append((r, Cell(kind, n, p["processes_threads"], **common)))
    _cells("processes", cells, url, sink, workdir, emit)


def _sweep(p: dict[str, Any], url: str, sink: Sink, workdir: Path, emit: Callable[..., None]) -> None:
    cells = cells_for_sweep(
        ("cpu", "io"),
        [int(t) for t in p["sweep_threads"].split(",")],
        p["sweep_prefetch"].split(","),
        p["sweep_prefetch_threads"],
        grid=p["sweep_grid"],
        window=p["window"],
        warmup=p["warmup"],
        load=p["sweep_load"],
        seconds=p["latency_seconds"],
    )
    random.Random(7).shuffle(cells)  # slow drift of the machine's load must not line up with one axis
    _cells("sweep", [(0, c) for c in cells], url, sink, workdir, emit)


def estimate_seconds(p: dict[str, Any], parts: list[str]) -> float:
    """A rough duration of a run on the 2-core VM (each fresh process costs seconds of imports there)."""
    cell_seconds = p["warmup"] + p["window"]
    sweep = cells_for_sweep(
        ("cpu", "io"),
        [int(t) for t in p["sweep_threads"].split(",")],
        p["sweep_prefetch"].split(","),
        p["sweep_prefetch_threads"],
        grid=p["sweep_grid"],
    )
    per_part = {
        "overhead": tracing_overhead.estimate_seconds(p),
        "api": p["api_rounds"] * 2 * (18 + p["api_seconds"]),
        "rss": 10 + p["rss_messages"] / 1200,
        "processes": p["processes_rounds"] * len(p["processes_kinds"].split(",")) * 2 * (11 + cell_seconds),
        "sweep": len(sweep) * (10 + cell_seconds + p["latency_seconds"]),
    }
    return sum(per_part[part] for part in parts)


_RUNNERS = {"overhead": _overhead, "api": _api, "rss": _rss, "processes": _processes, "sweep": _sweep}


# -- RabbitMQ vhost -----------------------------------------------------------------------------------


def _rabbitmqctl(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", "-q", *argv], capture_output=True, text=True, timeout=60, check=False)


def open_vhost(name: str) -> str | None:
    """Create ``name`` with full rights for guest; None when rabbitmqctl is missing or refuses."""
    try:
        added = _rabbitmqctl("add_vhost", name)
        if added.returncode != 0 and "already" not in added.stdout + added.stderr:
            log(f"rabbitmqctl add_vhost {name} failed: {added.stderr.strip() or added.stdout.strip()}")
            return None
        if _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*").returncode != 0:
            return None
    except (OSError, subprocess.TimeoutExpired) as exc:
        log(f"no rabbitmqctl ({type(exc).__name__})")
        return None
    base = urllib.parse.urlsplit(DEFAULT_AMQP_URL)
    return urllib.parse.urlunsplit(base._replace(path="/" + urllib.parse.quote(name, safe="")))


def close_vhost(name: str) -> None:
    _rabbitmqctl("delete_vhost", name)


# -- outputs ------------------------------------------------------------------------------------------


def write_outputs(results: list[dict[str, Any]], raw: Path, *, docs: bool) -> str:
    """The report and plot beside the raw results; with ``docs``, also docs/benchmarks.md and its PNG."""
    png = raw.with_suffix(".png")
    plotted = plot(results, png)
    text = render(results, plot_name=png.name if plotted else None)
    raw.with_suffix(".md").write_text(text)
    if docs:
        document = ROOT / "docs" / "benchmarks.md"
        if plotted:
            plot(results, ROOT / "docs" / "bench-sweep.png")
        generated = render(results, plot_name="bench-sweep.png" if plotted else None)
        document.write_text(splice(document.read_text(), generated))
        log(f"wrote {document.relative_to(ROOT)}" + (" and docs/bench-sweep.png" if plotted else ""))
    return text


def build_parser() -> argparse.ArgumentParser:
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
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.report:
        raw = Path(args.report)
        print(write_outputs(read_jsonl(raw), raw, docs=bool(args.docs)))
        return
    parts = [part for part in args.only.split(",") if part]
    if unknown := set(parts) - set(PARTS):
        raise SystemExit(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    preset = PRESETS["quick" if args.quick else "full"]
    params = {key: getattr(args, key) if getattr(args, key) is not None else value for key, value in preset.items()}
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ") + ("-quick" if args.quick else "")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    raw, workdir = args.out_dir / f"{stamp}.jsonl", args.out_dir / stamp
    vhost_url = None if args.amqp_url else open_vhost(args.vhost)
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
                    _RUNNERS[part](params, url, sink, workdir, emit)
                # One broken part must not cost the others; the scripts raise SystemExit when a child fails.
                # Ctrl-C (KeyboardInterrupt) still stops the run.
                except (Exception, SystemExit) as exc:
                    log(f"{part} failed: {exc!r}")
                    emit({"part": "error", "name": part, "error": repr(exc)[:500]})
                seconds = time.monotonic() - begin
                emit({"part": "timing", "name": part, "seconds": seconds, "load": [load, os.getloadavg()[0]]})
                log(f"{part} done in {seconds:.0f} s")
            emit({"part": "end", "seconds": time.monotonic() - _STARTED, "loadavg": list(os.getloadavg())})
        finally:
            sink.close()
            if vhost_url:
                close_vhost(args.vhost)
    docs = args.docs if args.docs is not None else not args.quick
    print(write_outputs(results, raw, docs=docs))
