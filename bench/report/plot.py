"""The sweep as a picture: throughput and consumer latency against worker threads and against prefetch.

Top row throughput, bottom row p95 consumer latency (log scale); left column the threads axis at Dramatiq's
default prefetch, middle column the prefetch axis at one thread count, one line per kind of actor. Hollow
markers are cells that fell behind the offered load (their latency is a lower bound). The right column shows
the paired ratios of the plain-vs-ours rounds and the 1 vs 2 processes runs, and the worker's RSS over the long
run, when the run has them.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.report.results import by_round, paired
from bench.report.scaling import KIND_NAMES

__all__ = ["plot"]

_COLORS = {"cpu": "tab:red", "io": "tab:blue"}
_SCENARIOS = {"stub_consume": "Stub consume", "rmq_consume": "RMQ consume", "rmq_publish": "RMQ publish"}


def _axis_cells(cells: list[dict[str, Any]], kind: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(threads axis at the default prefetch, prefetch axis at the most-swept thread count, that count)."""
    mine = [c for c in cells if c["kind"] == kind and c.get("rate")]
    by_threads = sorted((c for c in mine if c["prefetch_spec"] == "2T"), key=lambda c: c["threads"])
    counts = {t: sum(c["threads"] == t for c in mine) for t in {c["threads"] for c in mine}}
    threads = max(counts, key=lambda t: (counts[t], t)) if counts else 0
    by_prefetch = sorted((c for c in mine if c["threads"] == threads), key=lambda c: c["prefetch"])
    return by_threads, by_prefetch, threads


def _line(ax: Any, cells: list[dict[str, Any]], x: str, y: str, kind: str) -> None:
    points = [(c[x], c[y], bool(c.get("saturated"))) for c in cells if c.get(y) is not None]
    if not points:
        return
    color = _COLORS.get(kind, "black")
    ax.plot([p[0] for p in points], [p[1] for p in points], "-", color=color, label=KIND_NAMES.get(kind, kind))
    for px, py, hollow in points:
        ax.plot([px], [py], "o", color=color, markerfacecolor="white" if hollow else color)


def _ratios(ax: Any, overhead: list[dict[str, Any]], processes: list[dict[str, Any]]) -> None:
    labels, medians, lows, highs = [], [], [], []

    def add(label: str, ratios: list[float]) -> None:
        if ratios:
            labels.append(label)
            medians.append(statistics.median(ratios))
            lows.append(medians[-1] - min(ratios))
            highs.append(max(ratios) - medians[-1])

    for scenario, label in _SCENARIOS.items():
        rows = [r for r in overhead if r["scenario"] == scenario]
        ours = by_round((r for r in rows if r["variant"] == "ours"), "rate")
        add(f"{label}\nours/plain", paired(ours, by_round((r for r in rows if r["variant"] == "plain"), "rate")))
    for kind in ("noop", "cpu", "io"):
        rows = [r for r in processes if r["kind"] == kind]
        two = by_round((r for r in rows if r["processes"] == 2), "rate")
        add(f"{kind}\n-p 2/-p 1", paired(two, by_round((r for r in rows if r["processes"] == 1), "rate")))
    if not labels:
        ax.set_visible(False)
        return
    ax.barh(labels, medians, xerr=[lows, highs], color="tab:gray", capsize=3)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("paired ratio (median, min-max)")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)


def _rss(ax: Any, runs: list[dict[str, Any]]) -> None:
    samples = [s for run in runs for s in run["samples"]]
    if not samples:
        ax.set_visible(False)
        return
    ax.plot([s["messages"] for s in samples], [s["rss_kib"] / 1024 for s in samples], "o-", label="VmRSS")
    ax.plot([s["messages"] for s in samples], [s["hwm_kib"] / 1024 for s in samples], "--", label="VmHWM")
    ax.set_xlabel("messages processed")
    ax.set_ylabel("MiB")
    ax.set_title("worker process memory over the long run")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def _ticks(ax: Any, values: set[int]) -> None:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log", base=2)
    if values:
        ax.set_xticks(sorted(values))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot(results: list[dict[str, Any]], path: Path) -> bool:
    """Write the PNG; False (and no file) when the results hold no sweep."""
    cells = [r for r in results if r.get("part") == "sweep"]
    if not cells:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5), constrained_layout=True)
    prefetch_threads = set()
    xs: tuple[set[int], set[int]] = (set(), set())
    for kind in ("cpu", "io"):
        by_threads, by_prefetch, threads = _axis_cells(cells, kind)
        prefetch_threads.add(threads)
        xs[0].update(c["threads"] for c in by_threads)
        xs[1].update(c["prefetch"] for c in by_prefetch)
        _line(axes[0][0], by_threads, "threads", "rate", kind)
        _line(axes[1][0], by_threads, "threads", "lat_p95_ms", kind)
        _line(axes[0][1], by_prefetch, "prefetch", "rate", kind)
        _line(axes[1][1], by_prefetch, "prefetch", "lat_p95_ms", kind)
    load = sorted({c["offered_rate"] for c in cells if c.get("offered_rate")})
    loads = "/".join(f"{x:g}" for x in load)
    at = ", ".join(str(t) for t in sorted(prefetch_threads))
    for col, (xlabel, title) in enumerate(
        (("worker threads (-t)", "prefetch: Dramatiq's default (2 x threads)"), ("prefetch", f"threads: {at}"))
    ):
        for row in (0, 1):
            ax = axes[row][col]
            _ticks(ax, xs[col])
            ax.set_xlabel(xlabel)
            ax.grid(True, which="both", alpha=0.3)
        axes[0][col].set_ylabel("throughput, msgs/s (one process)")
        axes[0][col].set_title(title)
        axes[1][col].set_ylabel(f"p95 enqueue -> start, ms at {loads} msg/s")
        axes[1][col].set_yscale("log")
    axes[0][0].legend(fontsize=8)
    overhead = [r for r in results if r.get("part") == "overhead"]
    _ratios(axes[0][2], overhead, [r for r in results if r.get("part") == "processes"])
    axes[0][2].set_title("paired ratios")
    _rss(axes[1][2], [r for r in results if r.get("part") == "rss"])
    fig.suptitle("tracedq workers: throughput and consumer latency (hollow: fell behind the offered load)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
