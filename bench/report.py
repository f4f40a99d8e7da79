"""The suite's report: markdown tables from raw results, the recommendations, and the splice into the docs.

Pure functions of the result dicts ``bench/suite.py`` writes as JSON lines (each has a ``part``); nothing here
measures, so ``tests/unit/test_bench_report.py`` checks it all on fake results.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from bench.common import by_round, paired, pct, spread
from bench.report_scaling import processes_section, recommend, rss_section, sweep_section

__all__ = ["BEGIN", "END", "TARGETS", "recommend", "render", "splice"]

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
#: scenario -> minimum paired median ratio ours/plain (issue targets, as in bench/tracing_overhead.py)
TARGETS = {"rmq_consume": 0.80, "rmq_publish": 0.65, "stub_consume": 0.70}
RSS_TARGET_MIB = 4.0
_SCENARIOS = {
    "stub_consume": "StubBroker consume",
    "rmq_consume": "RabbitMQ consume",
    "rmq_publish": "RabbitMQ publish (confirms)",
    "burst": "StubBroker `.send()` burst",
}


def splice(document: str, generated: str) -> str:
    """Replace what lies between :data:`BEGIN` and :data:`END`; without markers, insert them after the title.

    Raises:
        ValueError: only one marker, or END before BEGIN.
    """
    block = f"{BEGIN}\n{generated.strip()}\n{END}"
    has_begin, has_end = BEGIN in document, END in document
    if has_begin and has_end:
        head, _, rest = document.partition(BEGIN)
        if END not in rest:
            raise ValueError(f"{END} comes before {BEGIN}")
        return head + block + rest.partition(END)[2]
    if has_begin or has_end:
        raise ValueError(f"the document has only one of {BEGIN} / {END}")
    title, newline, body = document.partition("\n")
    if not title.startswith("# "):
        return f"{block}\n\n{document}"
    return f"{title}\n\n{block}\n{newline}{body.lstrip(chr(10))}" if body else f"{title}\n\n{block}\n"


# -- plain vs ours ------------------------------------------------------------------------------------


def _overhead(results: list[dict[str, Any]]) -> list[str]:
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for res in results:
        by[(res["scenario"], res["variant"])].append(res)
    variants = [v for v in ("ours", "sdk_default") if any(k[1] == v for k in by)]
    n = next((r["n"] for r in results if r["scenario"] != "burst"), 0)
    burst = next((r["n"] for r in results if r["scenario"] == "burst"), 0)
    rounds = len({r["round"] for r in results})
    header = "| scenario | plain msgs/s | " + " | ".join(f"{v} msgs/s | {v} / plain (paired)" for v in variants)
    lines = [
        f"N = {n:,} messages per measurement (burst {burst:,}), {rounds} interleaved rounds, one worker process with "
        "8 threads, no-op actor. Cells: median [min, max] over rounds; a ratio is the variant's rate over plain's in "
        "the same round.",
        "",
        header + " | CPU µs/msg plain / ours | target (ours) |",
        "|---|---|" + "---|---|" * len(variants) + "---|---|",
    ]
    for scenario, label in _SCENARIOS.items():
        plain = by.get((scenario, "plain"), [])
        if not plain:
            continue
        cells = [spread((r["rate"] for r in plain), "{:,.0f}")]
        for variant in variants:
            rows = by.get((scenario, variant), [])
            ratios = paired(by_round(rows, "rate"), by_round(plain, "rate"))
            cells += [spread((r["rate"] for r in rows), "{:,.0f}"), f"**{spread(ratios)}**" if ratios else "-"]
        cpu_ours = [r["cpu_us"] for r in by.get((scenario, "ours"), [])]
        cells.append(f"{spread((r['cpu_us'] for r in plain), '{:.0f}')} / {spread(cpu_ours, '{:.0f}')}")
        ratios = paired(by_round(by.get((scenario, "ours"), []), "rate"), by_round(plain, "rate"))
        target = TARGETS.get(scenario)
        verdict = "-"
        if target is not None and ratios:
            verdict = f"≥ {target:.2f}x: {'holds' if statistics.median(ratios) >= target else '**misses**'}"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {verdict} |")
    lines.append("")
    for variant in ("ours", "sdk_default"):
        rows = by.get(("burst", variant), [])
        if rows:
            lost = [r.get("spans_created", r.get("spans_expected", 0)) - r["spans_received"] for r in rows]
            verdict = f" (target 0: {'holds' if max(lost) == 0 else '**misses**'})" if variant == "ours" else ""
            each = ", ".join(f"{x:,}" for x in lost)
            lines.append(
                f"- Spans lost in the {burst:,}-message burst, {variant}: {each} in {len(lost)} round(s){verdict}."
            )
    plain_hwm = by_round(by.get(("rmq_consume", "plain"), []), "vmhwm_kib")
    ours_hwm = by_round(by.get(("rmq_consume", "ours"), []), "vmhwm_kib")
    deltas = [(ours_hwm[r] - plain_hwm[r]) / 1024 for r in ours_hwm if r in plain_hwm]
    if deltas:
        verdict = "holds" if statistics.median(deltas) <= RSS_TARGET_MIB else "**misses**"
        lines.append(
            f"- Consumer peak RSS (VmHWM) after {n:,} messages: plain "
            f"{spread((v / 1024 for v in plain_hwm.values()), '{:.1f}')} MiB, ours "
            f"{spread((v / 1024 for v in ours_hwm.values()), '{:.1f}')} MiB, paired delta "
            f"{spread(deltas, '{:+.1f}')} MiB (target ≤ +{RSS_TARGET_MIB:.0f} MiB: {verdict})."
        )
    return lines


# -- API ----------------------------------------------------------------------------------------------


def _api(results: list[dict[str, Any]]) -> list[str]:
    lat = [r for r in results if r.get("scenario") == "latency"]
    rounds = len({r["round"] for r in lat})
    seconds = {r.get("latency_seconds") for r in lat} - {None}
    lines = [
        f"Open loop, POST /orders → actor start, {rounds} round(s) per variant, fresh API and worker processes per "
        "round; `untraced` = `OTEL_SDK_DISABLED=true`. Percentiles over all rounds' requests pooled; paired ratio = "
        "traced / untraced in the same round." + (f" {seconds.pop():g} s per rate." if len(seconds) == 1 else ""),
        "",
        "| rate | variant | requests (errors, not started) | e2e p50 ms | e2e p99 ms | paired ratio p50 "
        "| paired ratio p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for rate in sorted({r["rate"] for r in lat}):
        rows = {v: [r for r in lat if r["rate"] == rate and r["variant"] == v] for v in ("untraced", "traced")}
        for variant, runs in rows.items():
            if not runs:
                continue
            pooled = [v for r in runs for v in r.get("e2e_ms", [])]
            p50 = f"{pct(pooled, 50):.1f}" if pooled else "-"
            p99 = f"{pct(pooled, 99):.1f}" if pooled else "-"
            ratio = {}
            for q in (50, 99):
                key = f"e2e_p{q}_ms"
                ratios = paired(by_round(rows["traced"], key), by_round(rows["untraced"], key))
                ratio[q] = "1" if variant == "untraced" else spread(ratios)
            count = (
                f"{sum(r['requests'] for r in runs):,} ({sum(r['errors'] for r in runs)}, "
                f"{sum(r['not_started'] for r in runs)})"
            )
            lines.append(f"| {rate:g}/s | {variant} | {count} | {p50} | {p99} | {ratio[50]} | {ratio[99]} |")
    return lines


# -- the whole report ---------------------------------------------------------------------------------


def _machine(meta: dict[str, Any], end: dict[str, Any]) -> list[str]:
    facts = meta["facts"]
    packages = ", ".join(f"{name} {version}" for name, version in facts["packages"].items())
    load = f"load average {facts['loadavg'][0]:.1f} at the start"
    if end.get("loadavg"):
        load += f", {end['loadavg'][0]:.1f} at the end"
    return [
        f"- Machine: `nproc` = {facts['nproc']}, {facts['cpu']}, {facts['mem_gib']:g} GiB RAM; {load} "
        "(1-minute; the machine is shared, so compare ratios, not absolute rates).",
        f"- Python {facts['python']}; {packages}; RabbitMQ {facts.get('rabbitmq', '?')}."
        + (f" `OTEL_*` set in the shell: {', '.join(facts['otel_env'])}." if facts.get("otel_env") else ""),
    ]


def render(results: list[dict[str, Any]], *, plot_name: str | None = "bench-sweep.png") -> str:
    """The generated block of docs/benchmarks.md (without the markers)."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for res in results:
        by[res["part"]].append(res)
    meta = by["meta"][0] if by["meta"] else {"facts": None}
    end = by["end"][0] if by["end"] else {}
    lines = [
        "_Generated by the last `make bench` run; everything between the `bench:begin` / `bench:end` markers is "
        "replaced by the next run (edit the text around them instead)._",
        "",
        "### Run",
        "",
    ]
    if meta.get("facts"):
        lines.append(f"- Command: `{meta['command']}`" + (" (**quick smoke sizes**)" if meta.get("quick") else ""))
        duration = f"{end['seconds'] / 60:.1f} min" if end.get("seconds") else "unfinished"
        lines.append(f"- Started {meta['started']}, took {duration}; raw results: `{meta['raw']}` (git-ignored).")
        lines += _machine(meta, end)
    timings = ", ".join(f"{t['name']} {t['seconds']:.0f} s" for t in by["timing"])
    if timings:
        lines.append(f"- Parts: {timings}.")
    lines += [f"- **{e['name']} failed**: `{e['error']}`" for e in by["error"]]
    sections = (
        ("Plain Dramatiq vs ours: paired, interleaved rounds", "overhead", _overhead),
        ("API end-to-end latency at a fixed rate", "api", _api),
    )
    for title, part, section in sections:
        if by[part]:
            lines += ["", f"### {title}", "", *section(by[part])]
    if by["rss"]:
        lines += ["", "### Worker RSS over a long run", "", *rss_section(by["rss"][0])]
    if by["processes"]:
        lines += ["", "### Throughput with 1 and 2 worker processes", "", *processes_section(by["processes"])]
    if by["sweep"]:
        lines += ["", "### Worker threads and prefetch", "", *sweep_section(by["sweep"], by["processes"])]
        if plot_name:
            lines += ["", f"![throughput and consumer latency vs threads and prefetch]({plot_name})"]
    return "\n".join(lines) + "\n"
