"""The suite's parts (``python -m bench``): their sizes, full and quick, and how each one runs.

Each runner takes the run's sizes, the RabbitMQ URL, the sink, a work folder and ``emit``, which records one
result (a dict tagged with its ``part``). ``overhead`` and ``api`` build their arguments with the command lines of
``bench/tracing_overhead.py`` and ``bench/api_latency.py``; ``rss``, ``processes`` and ``sweep`` run real worker
trees (``bench/harness/scaling.py``).
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import api_rounds, overhead_rounds
from bench.harness.scaling import rss, run_cell
from bench.harness.sink import Sink
from bench.workload.overhead_variants import VARIANTS
from bench.workload.sweep_cells import Cell, cells_for_sweep

__all__ = ["PARTS", "PRESETS", "RUNNERS", "STARTED", "Runner", "estimate_seconds", "log"]

PARTS = ("overhead", "api", "rss", "processes", "sweep")
_FULL: dict[str, Any] = {
    "messages": 4_000, "rounds": 5, "burst": 20_000, "variants": ",".join(VARIANTS),
    "import_repeats": 7,
    "api_rounds": 2, "api_rate": 100.0, "api_seconds": 10.0,
    "rss_messages": 100_000, "rss_step": 10_000,
    "processes_rounds": 2, "processes_kinds": "noop,cpu", "processes_threads": 8,
    "window": 3.0, "warmup": 0.5, "latency_seconds": 4.0, "sweep_load": 100.0,
    "sweep_threads": "1,2,4,8,16", "sweep_prefetch": "1,T,2T,8T", "sweep_prefetch_threads": 8,
    "sweep_grid": "cross",
}  # fmt: skip
#: Sizes of a full run (about 25 minutes on the 2-core VM) and of ``--quick`` (a smoke test, 4-5 minutes: the
#: full sizes but these).
PRESETS: dict[str, dict[str, Any]] = {
    "full": _FULL,
    "quick": {
        **_FULL,
        "messages": 300, "rounds": 1, "burst": 2_000, "import_repeats": 2,
        "api_rounds": 1, "api_rate": 50.0, "api_seconds": 3.0,
        "rss_messages": 10_000, "rss_step": 1_000, "processes_rounds": 1,
        "window": 1.5, "latency_seconds": 2.0,
        "sweep_threads": "1,4", "sweep_prefetch": "1,2T", "sweep_prefetch_threads": 4,
    },
}  # fmt: skip
#: When the run began (this module is imported at its start): the clock of :func:`log`.
STARTED = time.monotonic()


def log(message: str) -> None:
    """``[mm:ss] message`` on stderr, the time since the run began."""
    elapsed = int(time.monotonic() - STARTED)
    print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {message}", file=sys.stderr, flush=True)


class _PartWriter:
    """The ``out`` file ``overhead_rounds.rounds`` writes JSON lines to, turned into tagged results."""

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
    args = overhead_rounds.build_parser().parse_args([*argv, "--workdir", str(workdir / "overhead")])
    overhead_rounds.rounds(args, sink, _PartWriter(emit))


def _api(p: dict[str, Any], url: str, sink: Sink, workdir: Path, emit: Callable[..., None]) -> None:
    argv = ["-r", str(p["api_rounds"]), "--rates", str(p["api_rate"]), "--latency-seconds", str(p["api_seconds"])]
    args = api_rounds.build_parser().parse_args([*argv, "--amqp-url", url])
    args.clients = []  # latency at a fixed rate only; bench/api_latency.py alone also measures closed-loop req/s
    (workdir / "api").mkdir(parents=True, exist_ok=True)
    tagged = {"part": "api", "latency_seconds": p["api_seconds"]}
    api_rounds.rounds(args, sink, workdir / "api", lambda res: emit({**tagged, **res}))


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


def _sweep_cells(p: dict[str, Any], **common: Any) -> list[Cell]:
    """The sweep's cells for the sizes ``p``, CPU- and I/O-bound; ``common`` goes to every cell."""
    threads = [int(t) for t in p["sweep_threads"].split(",")]
    specs = p["sweep_prefetch"].split(",")
    return cells_for_sweep(("cpu", "io"), threads, specs, p["sweep_prefetch_threads"], grid=p["sweep_grid"], **common)


def _sweep(p: dict[str, Any], url: str, sink: Sink, workdir: Path, emit: Callable[..., None]) -> None:
    timing = {"window": p["window"], "warmup": p["warmup"], "load": p["sweep_load"], "seconds": p["latency_seconds"]}
    cells = _sweep_cells(p, **timing)
    random.Random(7).shuffle(cells)  # slow drift of the machine's load must not line up with one axis
    _cells("sweep", [(0, c) for c in cells], url, sink, workdir, emit)


def estimate_seconds(p: dict[str, Any], parts: list[str]) -> float:
    """A rough duration of a run on the 2-core VM (each fresh process costs seconds of imports there)."""
    cell_seconds = p["warmup"] + p["window"]
    sweep = _sweep_cells(p)
    per_part = {
        "overhead": overhead_rounds.estimate_seconds(p),
        "api": p["api_rounds"] * 2 * (18 + p["api_seconds"]),
        "rss": 10 + p["rss_messages"] / 1200,
        "processes": p["processes_rounds"] * len(p["processes_kinds"].split(",")) * 2 * (11 + cell_seconds),
        "sweep": len(sweep) * (10 + cell_seconds + p["latency_seconds"]),
    }
    return float(sum(per_part[part] for part in parts))


#: The runner of each part: (sizes, RabbitMQ URL, sink, work folder, emit) -> None.
Runner = Callable[[dict[str, Any], str, Sink, Path, Callable[..., None]], None]
RUNNERS: dict[str, Runner] = {
    "overhead": _overhead,
    "api": _api,
    "rss": _rss,
    "processes": _processes,
    "sweep": _sweep,
}
