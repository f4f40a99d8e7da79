"""What the benchmarks report: tables, ratios, the sweep's plot and the generated block of docs/benchmarks.md.

Pure functions of the result dicts the harness writes as JSON lines: nothing here measures, so
``tests/unit/test_bench_report.py`` checks it on fake results.
"""

from __future__ import annotations

__all__: list[str] = []
