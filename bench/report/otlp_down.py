"""The report of ``bench/otlp_down.py``: throughput with the OTLP endpoint down, paired against a working one."""

from __future__ import annotations

import statistics
from typing import Any

from bench.workload.otlp_down_broker import VARIANTS, WORKER_THREADS

__all__ = ["report"]


def report(results: list[dict[str, Any]], rounds: int) -> str:
    """The table: each endpoint's rate, its paired ratio to the sink's, peak RSS, spans and failure log lines."""
    by: dict[str, list[dict[str, Any]]] = {v: [r for r in results if r["variant"] == v] for v in VARIANTS}
    lines = [
        f"consume, StubBroker, {WORKER_THREADS} worker threads, N = {results[0]['n']}, {rounds} interleaved rounds",
        "",
        "| variant | median msg/s | paired ratio to sink: median [min, max] | median VmHWM MiB | spans exported"
        " / lost (median) | 'span export failing' lines (median) |",
        "|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        rows = by[variant]
        rates = [r["rate"] for r in rows]
        ratios = [r["rate"] / s["rate"] for r, s in zip(rows, by["sink"], strict=True)]
        lines.append(
            f"| {variant} | {statistics.median(rates):.0f} "
            f"| {statistics.median(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}] "
            f"| {statistics.median(r['vmhwm_kib'] for r in rows) / 1024:.1f} "
            f"| {statistics.median(r['exported'] for r in rows):.0f}"
            f" / {statistics.median(r['lost'] for r in rows):.0f} "
            f"| {statistics.median(r['log_lines'] for r in rows):.0f} |"
        )
    return "\n".join(lines)
