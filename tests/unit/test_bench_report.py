"""The benchmark suite's pure parts: numbers, the sweep's cells, recommendations, report tables, the docs splice.

Nothing here measures or starts a process: every result is a fake with the fields the suite writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.harness.import_cost import importtime_packages
from bench.harness.suite_parts import PARTS, PRESETS, estimate_seconds
from bench.report.document import BEGIN, END, render, splice
from bench.report.overhead import overhead_section
from bench.report.results import by_round, paired, pct, slope, spread
from bench.report.scaling import recommend, rss_growth
from bench.workload.sweep_cells import Cell, cells_for_sweep, resolve_prefetch

# -- numbers ------------------------------------------------------------------------------------------


def test_pct_is_nearest_rank() -> None:
    """p50 of 1..10 is 5, p95 is 10, p10 is 1 (nearest rank, no interpolation)."""
    values = [float(v) for v in range(10, 0, -1)]
    assert [pct(values, q) for q in (10, 50, 95, 100)] == [1.0, 5.0, 10.0, 10.0]


def test_pct_of_nothing_raises() -> None:
    """An empty sample has no percentile."""
    with pytest.raises(ValueError, match="no values"):
        pct([], 50)


def test_paired_divides_within_a_round_and_skips_unpaired_rounds() -> None:
    """Round 2 has no baseline, so it is left out; the others divide in round order."""
    ours = {0: 50.0, 1: 60.0, 2: 99.0}
    plain = {0: 100.0, 1: 80.0}
    assert paired(ours, plain) == [0.5, 0.75]


def test_by_round_feeds_paired() -> None:
    """Rows without the key are left out."""
    rows = [{"round": 0, "rate": 10.0}, {"round": 1, "rate": None}, {"round": 2, "rate": 30.0}]
    assert by_round(rows, "rate") == {0: 10.0, 2: 30.0}


def test_spread_is_median_then_min_and_max() -> None:
    """Several values give ``median [min, max]``; one gives just itself; none gives a dash."""
    assert spread([0.5, 0.9, 0.7]) == "0.70 [0.50, 0.90]"
    assert spread([2.0], "{:.1f}") == "2.0"
    assert spread([]) == "-"


def test_slope_is_least_squares() -> None:
    """y = 3x + 1 has slope 3; a flat line 0; a single point 0."""
    assert slope([(0, 1), (1, 4), (2, 7), (3, 10)]) == pytest.approx(3.0)
    assert slope([(0, 5), (10, 5)]) == 0.0
    assert slope([(1, 1)]) == 0.0


# -- the sweep's cells --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "threads", "expected"),
    [("1", 8, 1), ("T", 8, 8), ("2T", 8, 16), ("8T", 4, 32), ("T/2", 8, 4), ("T/2", 1, 1)],
)
def test_resolve_prefetch(spec: str, threads: int, expected: int) -> None:
    """Prefetch specs are absolute or multiples of the thread count, never below 1."""
    assert resolve_prefetch(spec, threads) == expected


def test_cross_sweep_runs_threads_at_default_prefetch_and_prefetch_at_one_thread_count() -> None:
    """The (8 threads, 2T) cell is on both axes and runs once."""
    cells = cells_for_sweep(["io"], [1, 8], ["1", "2T", "8T"], 8, grid="cross", window=2.0)
    assert [(c.threads, c.prefetch_spec, c.prefetch) for c in cells] == [
        (1, "2T", 2),
        (8, "2T", 16),
        (8, "1", 1),
        (8, "8T", 64),
    ]
    assert {c.window for c in cells} == {2.0}


def test_full_sweep_drops_cells_with_the_same_effective_prefetch() -> None:
    """At one thread, ``1`` and ``T`` are the same prefetch: one cell."""
    cells = cells_for_sweep(["cpu"], [1, 2], ["1", "T"], 2, grid="full")
    assert [(c.threads, c.prefetch) for c in cells] == [(1, 1), (2, 1), (2, 2)]


def test_cell_prefetch_follows_threads() -> None:
    """A cell's effective prefetch is its spec applied to its threads."""
    assert Cell("io", 1, 4, "8T").prefetch == 32


# -- recommendations ----------------------------------------------------------------------------------


def _cell(kind: str, threads: int, prefetch: int, rate: float, p95: float, **extra: Any) -> dict[str, Any]:
    spec = "2T" if prefetch == 2 * threads else str(prefetch)
    return {
        "part": "sweep",
        "kind": kind,
        "processes": 1,
        "threads": threads,
        "prefetch": prefetch,
        "prefetch_spec": spec,
        "rate": rate,
        "lat_p50_ms": p95 / 2,
        "lat_p95_ms": p95,
        "offered_rate": 100.0,
        "window": 3.0,
        "seconds": 4.0,
        "tail": 2.0,
        "cpu_ms_per_msg": 1.0,
        "service_p50_ms": 20.0,
        **extra,
    }


def test_recommend_takes_fewest_threads_among_the_fast_and_prompt() -> None:
    """8 and 16 threads are within 5 % of the best rate and similar p95: 8 wins; 4 is too slow."""
    cells = [
        _cell("io", 4, 8, 150.0, 5.0),
        _cell("io", 8, 16, 380.0, 4.0),
        _cell("io", 16, 32, 390.0, 4.5),
    ]
    assert recommend(cells, "io") == cells[1]


def test_recommend_ignores_cells_that_fell_behind() -> None:
    """The fastest cell left messages unstarted, so the next one is recommended."""
    cells = [_cell("io", 16, 32, 500.0, 3000.0, saturated=True), _cell("io", 8, 16, 300.0, 6.0)]
    assert recommend(cells, "io") == cells[1]


def test_recommend_prefers_a_lower_latency_over_fewer_threads() -> None:
    """Equal rates, but 1 thread has 10x the p95 of 2 threads: 2 threads."""
    cells = [_cell("cpu", 1, 2, 300.0, 100.0), _cell("cpu", 2, 4, 300.0, 10.0)]
    assert recommend(cells, "cpu") == cells[1]


def test_recommend_nothing_when_no_cell_kept_up() -> None:
    """Only saturated cells: no recommendation."""
    assert recommend([_cell("io", 1, 2, 50.0, 900.0, saturated=True)], "io") is None


# -- RSS ----------------------------------------------------------------------------------------------


def _rss(values_mib: list[float], step: int = 10_000) -> dict[str, Any]:
    samples = [{"mark": 1, "messages": 3, "pid": 7, "rss_kib": 40 * 1024, "hwm_kib": 40 * 1024}]
    for i, mib in enumerate(values_mib, start=1):
        samples.append(
            {"mark": i * step, "messages": i * step, "pid": 7, "rss_kib": int(mib * 1024), "hwm_kib": int(mib * 1024)}
        )
    return {
        "part": "rss",
        "messages": len(values_mib) * step,
        "processed": len(values_mib) * step,
        "samples": samples,
        "rate": 1500.0,
        "spans_received": len(values_mib) * step,
    }


def test_rss_growth_ignores_the_first_message_sample() -> None:
    """+0.5 MiB per 10,000 from the first mark; the 40 MiB at message 3 (before warm-up) is left out."""
    growth = rss_growth(_rss([60.0, 60.5, 61.0, 61.5]))
    assert growth["slope_kib_per_10k"] == pytest.approx(512.0)
    assert growth["second_half_mib"] == pytest.approx(1.0)


# -- the report ---------------------------------------------------------------------------------------


def _overhead(scenario: str, variant: str, r: int, rate: float, **extra: Any) -> dict[str, Any]:
    return {
        "part": "overhead",
        "scenario": scenario,
        "variant": variant,
        "round": r,
        "rate": rate,
        "n": 20_000,
        "cpu_us": 1e6 / rate,
        "spans_received": 0 if variant == "plain" else 20_000,
        **extra,
    }


def _fake_run() -> list[dict[str, Any]]:
    facts = {
        "nproc": 2,
        "cpu": "Fake CPU",
        "mem_gib": 8.0,
        "loadavg": [1.5, 1.0, 1.0],
        "python": "3.11.7",
        "packages": {"dramatiq": "2.2.1"},
        "otel_env": [],
        "rabbitmq": "3.10.8",
    }
    results: list[dict[str, Any]] = [
        {
            "part": "meta",
            "command": "make bench",
            "quick": False,
            "started": "2026-01-01T00:00:00+00:00",
            "raw": ".bench/x.jsonl",
            "facts": facts,
            "params": {},
        },
    ]
    for r, (plain, ours) in enumerate([(4000.0, 2000.0), (4000.0, 2400.0), (5000.0, 2000.0)]):
        results.append(_overhead("rmq_consume", "plain", r, plain, vmhwm_kib=34 * 1024))
        results.append(_overhead("rmq_consume", "broker_shipped", r, ours, vmhwm_kib=55 * 1024))
        results.append(_overhead("rmq_consume", "tracing_full", r, plain * 0.9, vmhwm_kib=44 * 1024))
        results.append(_overhead("burst", "broker_shipped", r, 10_000.0, spans_created=20_000))
        results.append(_overhead("burst", "minimal_bsp", r, 10_000.0, spans_created=20_000, spans_received=19_000))
    results.append(
        {
            "part": "overhead",
            "scenario": "import",
            "variant": "observability",
            "seconds": [0.09, 0.11, 0.1],
            "importtime_ms": 120.0,
            "packages": [["opentelemetry", 14.4], ["dramatiq", 11.6]],
        }
    )
    for r in (0, 1):
        for n, rate in ((1, 1000.0), (2, 1500.0 + 100 * r)):
            results.append(
                {
                    "part": "processes",
                    "round": r,
                    "kind": "noop",
                    "processes": n,
                    "threads": 8,
                    "window": 3.0,
                    "rate": rate,
                    "cpu_ms_per_msg": 0.5,
                }
            )
    results += [
        _cell("io", 1, 2, 48.0, 2500.0, saturated=True),
        _cell("io", 8, 16, 380.0, 4.0),
        _cell("cpu", 1, 2, 350.0, 6.0),
        _cell("cpu", 8, 1, 300.0, 9.0),
        _rss([60.0, 60.2, 60.1, 60.3]),
        {"part": "timing", "name": "overhead", "seconds": 240.0, "load": [1.0, 1.2]},
        {"part": "end", "seconds": 900.0, "loadavg": [2.0, 1.5, 1.2]},
    ]
    return results


def test_render_overhead_one_row_per_variant_with_its_targets() -> None:
    """Plain's row is msgs/s and VmHWM; the others are paired ratios and RSS deltas, each with its own targets."""
    lines = render(_fake_run()).splitlines()
    header = "| variant | RabbitMQ consume | worker peak RSS, MiB | burst: spans lost of 20,000 | targets |"
    assert header in lines
    assert "| plain (msgs/s) | 4,000 [4,000, 5,000] | 34.0 [34.0, 34.0] | - | - |" in lines
    assert "| minimal_bsp | - | - | 1,000, 1,000, 1,000 | - |" in lines
    assert "| tracing_full | 0.90 [0.90, 0.90]x | +10.0 [+10.0, +10.0] | - | RSS ≤ +12 MiB: holds |" in lines
    assert (
        "| broker_shipped | 0.50 [0.40, 0.60]x | +21.0 [+21.0, +21.0] | 0, 0, 0 "
        "| consume ≥ 0.80x: **misses**; 0 lost: holds |"
    ) in lines
    rows = [line.split(" | ")[0] for line in lines if line.startswith("| ") and "x |" in line]
    assert rows == ["| tracing_full", "| broker_shipped"]  # the variants' order, not the results'


def test_render_overhead_import_times_against_the_target() -> None:
    """The core import's median is checked against 0.25 s; -X importtime's top packages follow."""
    assert (
        "- `import observability`: 0.100 [0.090, 0.110] s (median [min, max] of 3 fresh processes), target ≤ 0.25 s: "
        "holds. Under `-X importtime` (120 ms in all), self ms by package: opentelemetry 14, dramatiq 12."
    ) in render(_fake_run()).splitlines()


def test_overhead_notes_name_spans_missing_outside_the_burst() -> None:
    """A consume run whose spans did not all arrive is listed by scenario, variant and round."""
    rows = [
        _overhead("rmq_consume", "plain", 0, 4000.0),
        _overhead("rmq_consume", "tracing", 0, 3000.0, spans_expected=20_000, spans_received=19_990),
    ]
    assert "- Spans missing at the sink outside the burst: rmq_consume tracing round 0: 10 of 20,000." in (
        overhead_section(rows)
    )


def test_importtime_sums_self_time_per_top_level_package() -> None:
    """Self µs add up per first dotted name; the header, other lines and start-up modules are skipped."""
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       500 |        500 |   opentelemetry.trace\n"
        "import time:      1500 |       2000 | opentelemetry\n"
        "import time:       250 |        250 | dramatiq\n"
        "some warning\n"
    )
    assert importtime_packages(stderr, top=1) == (2.25, [("opentelemetry", 2.0)])
    assert importtime_packages(stderr, startup={"dramatiq"}) == (2.0, [("opentelemetry", 2.0)])


def test_render_processes_sweep_and_recommendations() -> None:
    """1 vs 2 processes as a paired ratio; saturated sweep cells marked; one recommendation per kind."""
    lines = render(_fake_run()).splitlines()
    assert (
        "| no-op | 1,000 [1,000, 1,000] | 1,550 [1,500, 1,600] | **1.55 [1.50, 1.60]** "
        "| 0.50 [0.50, 0.50] / 0.50 [0.50, 0.50] |"
    ) in lines
    assert "| 1 | 2 (default) | 48 | 1.00 | ≥ 1250.0 / ≥ 2500.0 | 20.0 | fell behind |" in lines
    assert (
        "- I/O-bound (20 ms sleep): `-t 8`, leave `dramatiq_queue_prefetch` unset (380 msg/s per process, "
        "p95 latency 4.0 ms at 100 msg/s)."
    ) in lines
    assert (
        "- CPU-bound (2 ms of CPU): `-t 1`, leave `dramatiq_queue_prefetch` unset (350 msg/s per process, "
        "p95 latency 6.0 ms at 100 msg/s)."
    ) in lines
    assert "![throughput and consumer latency vs threads and prefetch](bench-sweep.png)" in lines


def test_render_machine_facts_command_and_rss_verdict() -> None:
    """The run section names the command and the machine; a flat RSS series reads as no growth."""
    text = render(_fake_run())
    assert "- Command: `make bench`\n" in text
    assert "`nproc` = 2, Fake CPU, 8 GiB RAM; load average 1.5 at the start, 2.0 at the end" in text
    assert "**no growth** (within ±1 MiB)." in text


def test_render_leaves_out_parts_that_did_not_run() -> None:
    """Only a failed part and its error: no tables, the failure named."""
    text = render([{"part": "error", "name": "api", "error": "ConnectionRefusedError()"}])
    assert "- **api failed**: `ConnectionRefusedError()`" in text
    assert "###" in text and "| scenario |" not in text and "Recommended" not in text


# -- the docs splice ----------------------------------------------------------------------------------


def test_splice_replaces_only_between_the_markers() -> None:
    """Hand-written text before and after the markers survives; the old block is gone."""
    document = f"# Title\n\nintro\n\n{BEGIN}\nold table\n{END}\n\n## Analysis\nkept\n"
    assert splice(document, "new table\n") == f"# Title\n\nintro\n\n{BEGIN}\nnew table\n{END}\n\n## Analysis\nkept\n"


def test_splice_twice_is_the_same_as_once() -> None:
    """Regenerating with the same results changes nothing."""
    document = f"# Title\n\n{BEGIN}\nold\n{END}\nafter\n"
    once = splice(document, "new")
    assert splice(once, "new") == once


def test_splice_without_markers_inserts_them_after_the_title() -> None:
    """A document without markers gets the block right after its first heading."""
    assert splice("# Title\n\nbody\n", "gen") == f"# Title\n\n{BEGIN}\ngen\n{END}\n\nbody\n"


@pytest.mark.parametrize("document", [f"# T\n{BEGIN}\nno end\n", f"# T\n{END}\n{BEGIN}\n"])
def test_splice_refuses_broken_markers(document: str) -> None:
    """One marker alone, or the end before the beginning, is an error rather than a guess."""
    with pytest.raises(ValueError, match="bench:"):
        splice(document, "gen")


def test_the_docs_have_exactly_one_generated_block() -> None:
    """docs/benchmarks.md carries the markers once each, in order, so the suite can rewrite it."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1 and text.index(BEGIN) < text.index(END)


# -- presets ------------------------------------------------------------------------------------------


def test_quick_and_full_presets_set_the_same_sizes() -> None:
    """Every size has a full and a quick value, and --only knows every part the suite runs."""
    assert PRESETS["quick"].keys() == PRESETS["full"].keys()
    assert PARTS == ("overhead", "api", "rss", "processes", "sweep")


def test_a_full_run_is_planned_within_thirty_minutes_and_quick_within_five() -> None:
    """The estimate the suite prints: seven overhead variants x 5 rounds (issue 11) take a full run past 20 minutes."""
    assert estimate_seconds(PRESETS["full"], list(PARTS)) < 30 * 60
    assert estimate_seconds(PRESETS["quick"], list(PARTS)) < 5 * 60
