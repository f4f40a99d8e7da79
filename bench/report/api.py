"""The producer API benchmark's report: latency and throughput tables, traced against untraced.

Pure functions of the result dicts ``bench/harness/api_rounds.py`` writes: :func:`report` is
``bench/api_latency.py``'s own table, :func:`api_section` the suite's (latency at one fixed rate).
"""

from __future__ import annotations

from typing import Any

from bench.report.results import by_round, med, mm, paired, pct, spread
from bench.workload.api_app import VARIANTS

__all__ = ["api_section", "report"]


def report(results: list[dict[str, Any]]) -> str:
    rounds = sorted({res["round"] for res in results})
    lat = {(res["variant"], res["rate"], res["round"]): res for res in results if res["scenario"] == "latency"}
    tput = {(res["variant"], res["clients"], res["round"]): res for res in results if res["scenario"] == "throughput"}
    rates = sorted({key[1] for key in lat})
    lines = [
        f"{len(rounds)} rounds. Latency: open loop, POST -> actor start; percentiles over all rounds' requests pooled;",
        "paired ratio = traced / untraced in the same round (min / median / max over rounds).",
        "",
        "| rate | variant | requests (errors, not started) | e2e p50 / p95 / p99 ms | POST->202 p50 / p99 ms "
        "| API enqueue p50 / p99 ms | paired ratio p50 | paired ratio p99 | e2e p50, last tenth of sends, ms (median) "
        "| client lag p99 ms (median) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rate in rates:
        for variant in VARIANTS:
            runs = [lat[(variant, rate, r)] for r in rounds if (variant, rate, r) in lat]
            if not runs:
                continue
            pooled = [v / 1e3 for res in runs for v in res["e2e_ms"]]
            e2e = " / ".join(f"{pct(pooled, q) * 1e3:.1f}" for q in (50, 95, 99)) if pooled else "-"
            resp = f"{med(x.get('response_p50_ms') for x in runs)} / {med(x.get('response_p99_ms') for x in runs)}"
            enq = (
                f"{med((x.get('enqueue_p50_ms') for x in runs), '{:.2f}')} / "
                f"{med((x.get('enqueue_p99_ms') for x in runs), '{:.2f}')}"
            )
            ratio: dict[int, str] = {}
            for q in (50, 99):
                pairs = [
                    lat[("traced", rate, r)][f"e2e_p{q}_ms"] / lat[("untraced", rate, r)][f"e2e_p{q}_ms"]
                    for r in rounds
                    if ("traced", rate, r) in lat and ("untraced", rate, r) in lat
                ]
                ratio[q] = "1" if variant == "untraced" else mm(pairs)
            count = (
                f"{sum(x['requests'] for x in runs)} ({sum(x['errors'] for x in runs)}, "
                f"{sum(x['not_started'] for x in runs)})"
            )
            lines.append(
                f"| {rate:g}/s | {variant} | {count} | {e2e} | {resp} | {enq} | {ratio[50]} | {ratio[99]} "
                f"| {med(x.get('e2e_last_tenth_p50_ms') for x in runs)} | {med(x['lag_p99_ms'] for x in runs)} |"
            )
    lines += [
        "",
        "Throughput: closed loop, worker stopped; cells min / median / max over rounds unless noted.",
        "",
        "| variant | clients | req/s | paired ratio | API CPU µs/req | POST->202 p50 / p99 ms (median) "
        "| client CPU µs/req (median) | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for clients in sorted({key[1] for key in tput}):
        for variant in VARIANTS:
            runs = [tput[(variant, clients, r)] for r in rounds if (variant, clients, r) in tput]
            if not runs:
                continue
            pairs = [
                tput[("traced", clients, r)]["rps"] / tput[("untraced", clients, r)]["rps"]
                for r in rounds
                if ("traced", clients, r) in tput and ("untraced", clients, r) in tput
            ]
            ratio_cell = "1" if variant == "untraced" else mm(pairs)
            lines.append(
                f"| {variant} | {clients} | {mm((x['rps'] for x in runs), '{:,.0f}')} | {ratio_cell} "
                f"| {mm((x['api_cpu_us'] for x in runs), '{:,.0f}')} "
                f"| {med(x['response_p50_ms'] for x in runs)} / {med(x['response_p99_ms'] for x in runs)} "
                f"| {med((x['client_cpu_us'] for x in runs), '{:,.0f}')} | {sum(x['errors'] for x in runs)} |"
            )
    traced = [res for res in results if res["variant"] == "traced" and "spans" in res]
    if traced:
        lines += ["", "Spans received by the sink per traced variant run (API + worker, all scenarios):"]
        lines += [f"- round {x['round']}: {x['spans']} spans, by name {x['spans_by_name']}" for x in traced]
    settle = [res["settle_s"] for res in results if "settle_s" in res]
    if settle:
        lines += ["", f"Settle wait after warm-up (s): {mm(settle, '{:.1f}')}."]
    return "\n".join(lines)


def api_section(results: list[dict[str, Any]]) -> list[str]:
    """The suite's section: end-to-end latency at one fixed rate, pooled percentiles and paired ratios."""
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
