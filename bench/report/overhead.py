"""The overhead benchmark's report: one table of every variant against plain, with the issue's targets beside it.

Pure functions of the result dicts ``bench/tracing_overhead.py`` writes (one per measurement, with ``scenario``,
``variant``, ``round``; the import timings have ``scenario == "import"``). ``bench/report/document.py`` puts the section
into docs/benchmarks.md, and ``tests/unit/test_bench_report.py`` checks it on fake results.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from bench.report.results import by_round, paired, spread
from bench.workload.overhead_variants import VARIANTS

__all__ = [
    "BURST_TARGET_VARIANTS",
    "IMPORT_TARGET_S",
    "RATIO_TARGETS",
    "RSS_TARGET",
    "overhead_section",
    "verdict",
]

#: (variant, scenario) -> the least paired median ratio against plain. The targets that name no variant apply to
#: what we ship, ``broker_shipped``.
RATIO_TARGETS: dict[tuple[str, str], float] = {
    ("broker_shipped", "rmq_consume"): 0.80,
    ("tracing", "rmq_consume"): 0.85,
    ("broker_shipped", "rmq_publish"): 0.90,
    ("broker_shipped", "stub_consume"): 0.60,
    ("broker_shipped", "fail_consume"): 0.70,
}
#: (variant, MiB): the most worker peak RSS (VmHWM, RabbitMQ consume) our observability may add on a plain broker.
RSS_TARGET = ("tracing_full", 12.0)
#: Our exporting variants must lose no span of the burst.
BURST_TARGET_VARIANTS = ("tracing", "tracing_inline", "tracing_full", "broker_shipped")
IMPORT_TARGET_S = 0.25
_ORDER = VARIANTS  # the table's rows, in the harness's order
_COLUMNS = {
    "rmq_consume": ("RabbitMQ consume", "consume"),
    "rmq_publish": ("RabbitMQ publish (confirms)", "publish"),
    "stub_consume": ("StubBroker consume", "stub"),
    "fail_consume": ("always-failing actor", "failing"),
}


def verdict(holds: bool) -> str:
    """``holds`` or a bold ``misses``."""
    return "holds" if holds else "**misses**"


def _lost(row: dict[str, Any]) -> int:
    created: int = row.get("spans_created", row.get("spans_expected", 0))
    return created - int(row["spans_received"])


def _variants(by: dict[tuple[str, str], list[dict[str, Any]]]) -> list[str]:
    present = {variant for _, variant in by}
    return [v for v in _ORDER if v in present] + sorted(present - set(_ORDER))


def _rss_cell(
    variant: str, by: dict[tuple[str, str], list[dict[str, Any]]], plain_hwm: dict[int, float], targets: list[str]
) -> str:
    """Plain's VmHWM in MiB, or the variant's paired difference to it; the RSS target's verdict goes to ``targets``."""
    hwm = by_round(by.get(("rmq_consume", variant), []), "vmhwm_kib")
    if variant == "plain":
        return spread((v / 1024 for v in hwm.values()), "{:.1f}")
    deltas = [(hwm[r] - plain_hwm[r]) / 1024 for r in sorted(hwm) if r in plain_hwm]
    if variant == RSS_TARGET[0] and deltas:
        targets.append(f"RSS ≤ +{RSS_TARGET[1]:g} MiB: {verdict(statistics.median(deltas) <= RSS_TARGET[1])}")
    return spread(deltas, "{:+.1f}")


def _table(by: dict[tuple[str, str], list[dict[str, Any]]], burst: int) -> list[str]:
    columns = [s for s in _COLUMNS if any(k[0] == s for k in by)]
    has_rss, has_burst = "rmq_consume" in columns, any(k[0] == "burst" for k in by)
    header = ["variant", *(_COLUMNS[s][0] for s in columns)]
    header += ["worker peak RSS, MiB"] * has_rss + [f"burst: spans lost of {burst:,}"] * has_burst
    lines = ["| " + " | ".join([*header, "targets"]) + " |", "|" + "---|" * (len(header) + 1)]
    plain_hwm = by_round(by.get(("rmq_consume", "plain"), []), "vmhwm_kib")
    for variant in _variants(by):
        cells, targets = [variant if variant != "plain" else "plain (msgs/s)"], []
        for scenario in columns:
            rows, plain = by.get((scenario, variant), []), by.get((scenario, "plain"), [])
            if variant == "plain":
                cells.append(spread((r["rate"] for r in rows), "{:,.0f}"))
                continue
            ratios = paired(by_round(rows, "rate"), by_round(plain, "rate"))
            cells.append(f"{spread(ratios)}x" if ratios else "-")
            bound = RATIO_TARGETS.get((variant, scenario))
            if bound is not None and ratios:
                median = statistics.median(ratios)
                targets.append(f"{_COLUMNS[scenario][1]} ≥ {bound:.2f}x: {verdict(median >= bound)}")
        if has_rss:
            cells.append(_rss_cell(variant, by, plain_hwm, targets))
        if has_burst:
            lost = [_lost(r) for r in by.get(("burst", variant), [])]
            cells.append(", ".join(f"{x:,}" for x in lost) if lost else "-")
            if variant in BURST_TARGET_VARIANTS and lost:
                targets.append(f"0 lost: {verdict(max(lost) == 0)}")
        lines.append("| " + " | ".join([*cells, "; ".join(targets) or "-"]) + " |")
    return lines


def _notes(by: dict[tuple[str, str], list[dict[str, Any]]]) -> list[str]:
    notes = []
    short = [
        f"{scenario} {variant} round {r['round']}: {_lost(r):,} of {r.get('spans_expected', 0):,}"
        for (scenario, variant), rows in sorted(by.items())
        if scenario != "burst"
        for r in rows
        if _lost(r) > 0
    ]
    exported = any(r.get("spans_expected") for (s, _), rows in by.items() if s != "burst" for r in rows)
    if short:
        notes.append("- Spans missing at the sink outside the burst: " + "; ".join(short) + ".")
    elif exported:
        notes.append("- Outside the burst, every span of the exporting variants reached the sink.")
    undead = [
        f"{variant} round {r['round']} ({r['dead_lettered']:,} of {r['n']:,})"
        for (scenario, variant), rows in sorted(by.items())
        if scenario == "fail_consume"
        for r in rows
        if r.get("dead_lettered", r["n"]) < r["n"]
    ]
    if undead:
        notes.append("- Always-failing actor, fewer dead-lettered messages than sent: " + "; ".join(undead) + ".")
    return notes


def _imports(rows: Iterable[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        seconds = row["seconds"]
        text = f"- `import {row['variant']}`: {spread(seconds, '{:.3f}')} s (median [min, max] of {len(seconds)} fresh "
        text += "processes)"
        if row["variant"] == "observability":
            text += f", target ≤ {IMPORT_TARGET_S:g} s: {verdict(statistics.median(seconds) <= IMPORT_TARGET_S)}"
        packages = ", ".join(f"{name} {ms:.0f}" for name, ms in row.get("packages", []))
        if packages:
            text += f". Under `-X importtime` ({row['importtime_ms']:.0f} ms in all), self ms by package: {packages}"
        lines.append(text + ".")
    return lines


def overhead_section(results: list[dict[str, Any]]) -> list[str]:
    """The section's lines: what was run, the table, span and dead-letter notes, import times."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    imports = []
    for res in results:
        if res.get("scenario") == "import":
            imports.append(res)
        elif "scenario" in res:
            by[(res["scenario"], res["variant"])].append(res)
    measured = [r for rows in by.values() for r in rows]
    n = next((r["n"] for r in measured if r["scenario"] != "burst"), 0)
    burst = next((r["n"] for r in measured if r["scenario"] == "burst"), 0)
    rounds = len({r["round"] for r in measured})
    lines = []
    if by:
        lines += [
            f"N = {n:,} messages per measurement, {rounds} interleaved round(s), one worker process with 8 threads, "
            "no-op actor (the failing one raises); spans exported over OTLP/HTTP to a separate sink process. Plain's "
            "row is msgs/s; every other cell is the variant's rate over plain's in the same round, median [min, max] "
            "over rounds. RSS: plain's VmHWM after RabbitMQ consume, the others' paired difference."
            + (
                f" Burst: {burst:,} `.send()` on a StubBroker, spans created minus received, per round."
                if burst
                else ""
            ),
            "",
            *_table(by, burst),
            "",
            *_notes(by),
        ]
    return lines + _imports(imports)
