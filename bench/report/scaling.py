"""Report sections for the real worker trees: RSS over a long run, 1 vs 2 processes, the threads/prefetch sweep,
and the settings recommended per kind of actor, derived from the sweep's cells (pure, like
``bench/report/document.py``)."""

from __future__ import annotations

import statistics
from typing import Any

from bench.report.results import by_round, paired, slope, spread

__all__ = ["KIND_NAMES", "processes_section", "recommend", "rss_growth", "rss_section", "sweep_section"]

KIND_NAMES = {"cpu": "CPU-bound (2 ms of CPU)", "io": "I/O-bound (20 ms sleep)", "noop": "no-op"}


def rss_growth(result: dict[str, Any]) -> dict[str, float]:
    """``slope_kib_per_10k`` (least squares over the samples from the first full step on) and
    ``second_half_mib`` (last sample minus the sample nearest half way)."""
    samples = [s for s in result["samples"] if s["mark"] > 1]  # mark 1: the first message, before warm-up
    if not samples:
        return {"slope_kib_per_10k": 0.0, "second_half_mib": 0.0}
    points = [(s["messages"], s["rss_kib"]) for s in samples]
    half = min(samples, key=lambda s: abs(s["messages"] - samples[-1]["messages"] / 2))
    return {
        "slope_kib_per_10k": slope(points) * 10_000,
        "second_half_mib": (samples[-1]["rss_kib"] - half["rss_kib"]) / 1024,
    }


def rss_section(result: dict[str, Any]) -> list[str]:
    growth = rss_growth(result)
    samples_from = min((s["mark"] for s in result["samples"] if s["mark"] > 1), default=0)
    flat = abs(growth["second_half_mib"]) <= 1.0
    lines = [
        f"One `dramatiq bench.workload.worker_actors -p 1 -t 8` worker process (the production broker and middleware), "
        f"no-op actor, {result['messages']:,} messages published while it consumes; VmRSS and VmHWM of the worker "
        f"process read from /proc as the count passes each mark. {result['processed']:,} processed at "
        f"{(result.get('rate') or 0):,.0f} msg/s; spans received by the sink: {result['spans_received']:,}.",
        "",
        "| messages processed | VmRSS MiB | VmHWM MiB |",
        "|---|---|---|",
    ]
    lines += [
        f"| {s['messages']:,} | {s['rss_kib'] / 1024:.1f} | {s['hwm_kib'] / 1024:.1f} |" for s in result["samples"]
    ]
    lines += [
        "",
        f"Slope (least squares, from {samples_from:,} messages on): "
        f"**{growth['slope_kib_per_10k']:+.0f} KiB per 10,000 messages**; "
        f"second half: {growth['second_half_mib']:+.1f} MiB → "
        + ("**no growth** (within ±1 MiB)." if flat else "**grows** (more than 1 MiB over the second half)."),
    ]
    return lines


# -- processes and the sweep --------------------------------------------------------------------------


def processes_section(results: list[dict[str, Any]]) -> list[str]:
    rounds = len({r["round"] for r in results})
    lines = [
        f"Real `dramatiq bench.workload.worker_actors -p 1` vs `-p 2` trees, {results[0]['threads']} threads each, "
        f"Dramatiq's default prefetch, a queue filled before start; rate = messages started in a "
        f"{results[0]['window']:g} s window after every process had started consuming. {rounds} round(s), the order "
        "alternating. Cells: median "
        "[min, max] over rounds.",
        "",
        "| actor | -p 1 msgs/s | -p 2 msgs/s | -p 2 / -p 1 (paired) | worker CPU ms/msg -p 1 / -p 2 |",
        "|---|---|---|---|---|",
    ]
    for kind in KIND_NAMES:
        one = [r for r in results if r["kind"] == kind and r["processes"] == 1]
        two = [r for r in results if r["kind"] == kind and r["processes"] == 2]
        if not one or not two:
            continue
        ratios = paired(by_round(two, "rate"), by_round(one, "rate"))
        cpu = f"{spread((r['cpu_ms_per_msg'] for r in one if r.get('cpu_ms_per_msg')), '{:.2f}')} / "
        cpu += spread((r["cpu_ms_per_msg"] for r in two if r.get("cpu_ms_per_msg")), "{:.2f}")
        lines.append(
            f"| {KIND_NAMES[kind]} | {spread((r['rate'] for r in one if r.get('rate')), '{:,.0f}')} "
            f"| {spread((r['rate'] for r in two if r.get('rate')), '{:,.0f}')} | **{spread(ratios)}** | {cpu} |"
        )
    return lines


def recommend(cells: list[dict[str, Any]], kind: str, tolerance: float = 0.05) -> dict[str, Any] | None:
    """The sweep cell we recommend for ``kind``.

    Among cells that kept up with the offered load (nothing left unstarted) and measured a rate: those within
    ``tolerance`` of the best throughput, then those within 25 % (or 2 ms) of the best p95 latency among them;
    of these the fewest threads, then the smallest prefetch (less held per worker, fairer across workers).
    """
    ok = [c for c in cells if c["kind"] == kind and c.get("rate") and not c.get("saturated")]
    if not ok:
        return None
    best = max(c["rate"] for c in ok)
    fast = [c for c in ok if c["rate"] >= (1 - tolerance) * best]
    latencies = [c["lat_p95_ms"] for c in fast if c.get("lat_p95_ms") is not None]
    if latencies:
        bound = max(min(latencies) * 1.25, min(latencies) + 2.0)
        fast = [c for c in fast if c.get("lat_p95_ms") is None or c["lat_p95_ms"] <= bound]
    return min(fast, key=lambda c: (c["threads"], c["prefetch"]))


def _prefetch_cell(cell: dict[str, Any]) -> str:
    spec = cell["prefetch_spec"]
    if spec == "2T":
        return f"{cell['prefetch']} (default)"
    return f"{cell['prefetch']} ({spec})" if "T" in spec else str(cell["prefetch"])


def sweep_section(cells: list[dict[str, Any]], processes: list[dict[str, Any]]) -> list[str]:
    first = cells[0]
    loads = sorted({c["offered_rate"] for c in cells if c.get("offered_rate")})
    lines = [
        f"One `dramatiq bench.workload.worker_actors -p 1 -t T` tree per cell; prefetch set with "
        f"`dramatiq_queue_prefetch` (unset = Dramatiq's default, 2 x threads). Throughput: backlog, "
        f"{first['window']:g} s window. Consumer latency: enqueue → actor start at an offered "
        f"{'/'.join(f'{x:g}' for x in loads)} msg/s for "
        f"{first['seconds']:g} s (open loop); ≥ marks a cell that fell behind (some messages not started "
        f"{first['tail']:g} s after the last send, counted with their wait so far). Service = start → end.",
    ]
    for kind in ("cpu", "io"):
        rows = sorted((c for c in cells if c["kind"] == kind), key=lambda c: (c["threads"], c["prefetch"]))
        if not rows:
            continue
        lines += [
            "",
            f"**{KIND_NAMES[kind]}**",
            "",
            "| threads | prefetch | msgs/s | worker CPU ms/msg | latency p50 / p95 ms | service p50 ms | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in rows:
            mark = "≥ " if c.get("saturated") else ""
            latency = f"{mark}{c['lat_p50_ms']:.1f} / {mark}{c['lat_p95_ms']:.1f}" if "lat_p50_ms" in c else "-"
            notes = [n for n, on in (("drained", c.get("drained")), ("fell behind", c.get("saturated"))) if on]
            lines.append(
                f"| {c['threads']} | {_prefetch_cell(c)} | {c['rate']:,.0f} | {c.get('cpu_ms_per_msg') or 0:.2f} | "
                f"{latency} | {c.get('service_p50_ms') or 0:.1f} | {', '.join(notes)} |"
                if c.get("rate")
                else f"| {c['threads']} | {_prefetch_cell(c)} | - | - | {latency} | - | no rate |"
            )
    lines += [
        "",
        "**Recommended**, derived from the tables by `bench/report/scaling.py:recommend`: among the cells that kept "
        "up with the offered load, those within 5 % of the best throughput and within 25 % (or 2 ms) of the best p95 "
        "latency among them; of these, the fewest threads, then the smallest prefetch.",
        "",
    ]
    for kind in ("cpu", "io"):
        pick = recommend(cells, kind)
        if pick is None:
            lines.append(f"- {KIND_NAMES[kind]}: no cell kept up with the offered load.")
            continue
        prefetch = (
            "leave `dramatiq_queue_prefetch` unset"
            if pick["prefetch_spec"] == "2T"
            else (f"`dramatiq_queue_prefetch={pick['prefetch']}`")
        )
        lines.append(
            f"- {KIND_NAMES[kind]}: `-t {pick['threads']}`, {prefetch} ({pick['rate']:,.0f} msg/s per process, "
            f"p95 latency {pick.get('lat_p95_ms', 0):.1f} ms at {pick.get('offered_rate', 0):g} msg/s)."
        )
    scaling = [r for r in processes if r["kind"] == "cpu"]
    ratios = paired(
        by_round([r for r in scaling if r["processes"] == 2], "rate"),
        by_round([r for r in scaling if r["processes"] == 1], "rate"),
    )
    if ratios and statistics.median(ratios) >= 1.3:
        lines.append(
            f"- CPU-bound work scales with processes, not threads: `-p 2` gave {spread(ratios)}x the throughput of "
            "`-p 1` (table above), so run one process per core."
        )
    elif ratios:
        lines.append(
            f"- `-p 2` gave only {spread(ratios)}x the CPU-bound throughput of `-p 1` here: the second core is shared "
            "with RabbitMQ, the span sink and the producer."
        )
    return lines
