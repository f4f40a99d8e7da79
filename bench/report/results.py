"""Raw results and the numbers drawn from them: percentiles, paired ratios, ``median [min, max]`` cells, slopes.

Pure helpers on numbers; the report's tables use them, the harness uses :func:`pct` to summarise its samples,
and ``tests/unit/test_bench_report.py`` checks them.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["by_round", "med", "mm", "paired", "pct", "read_jsonl", "slope", "spread"]


def pct(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty collection."""
    data = sorted(values)
    if not data:
        raise ValueError("percentile of no values")
    return data[max(0, min(len(data) - 1, math.ceil(q / 100 * len(data)) - 1))]


def paired(values: Mapping[Any, float], baseline: Mapping[Any, float]) -> list[float]:
    """``values[k] / baseline[k]`` for every key (a round) both have, in key order."""
    return [values[k] / baseline[k] for k in sorted(values) if baseline.get(k)]


def mm(values: Iterable[float], fmt: str = "{:.2f}") -> str:
    """``min / median / max``, or ``-`` for no values."""
    data = sorted(values)
    if not data:
        return "-"
    return f"{fmt.format(data[0])} / {fmt.format(statistics.median(data))} / {fmt.format(data[-1])}"


def med(values: Iterable[float | None], fmt: str = "{:.1f}") -> str:
    """The median of the values that are not None, or ``-``."""
    data = [v for v in values if v is not None]
    return fmt.format(statistics.median(data)) if data else "-"


def spread(values: Iterable[float], fmt: str = "{:.2f}") -> str:
    """``median [min, max]``; just the value when there is one; ``-`` when there is none."""
    data = sorted(values)
    if not data:
        return "-"
    middle = fmt.format(statistics.median(data))
    return middle if len(data) == 1 else f"{middle} [{fmt.format(data[0])}, {fmt.format(data[-1])}]"


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of ``y`` over ``x`` (0 for fewer than two distinct x)."""
    if len(points) < 2:
        return 0.0
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0


def by_round(rows: Iterable[Mapping[str, Any]], key: str) -> dict[int, float]:
    """``row["round"] -> row[key]`` for the rows that have a value (the input of :func:`paired`)."""
    return {row["round"]: row[key] for row in rows if row.get(key) is not None}


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """One dict per non-empty line."""
    with open(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]
