"""The cells of the worker-tree benchmarks: which processes, threads and prefetch one fresh worker tree runs with.

The ``processes`` and ``sweep`` parts (``bench/harness/suite_parts.py``) build their cells here and the harness
(``bench/harness/scaling.py``) runs each one. A prefetch is written as a spec relative to the thread count
(``1``, ``T``, ``2T``, ``8T``, ``T/2``), so a grid reads the same at any number of threads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_PREFETCH", "Cell", "cells_for_sweep", "resolve_prefetch"]

DEFAULT_PREFETCH = "2T"  # Dramatiq's own: 2 x threads when dramatiq_queue_prefetch is unset


def resolve_prefetch(spec: str, threads: int) -> int:
    """``"1"`` -> 1, ``"T"`` -> threads, ``"8T"`` -> 8 x threads, ``"T/2"`` -> threads // 2 (at least 1)."""
    spec = spec.strip()
    if "T" not in spec:
        return max(1, int(spec))
    head, _, divisor = spec.partition("/")
    factor = int(head[:-1] or 1)
    return max(1, factor * threads // (int(divisor) if divisor else 1))


@dataclass(frozen=True)
class Cell:
    """What one worker tree is run with."""

    kind: str
    processes: int
    threads: int
    prefetch_spec: str = DEFAULT_PREFETCH
    window: float = 3.0
    warmup: float = 0.5
    load: float | None = None  # open-loop msgs/s of the latency phase; None skips it
    seconds: float = 4.0
    tail: float = 2.0

    @property
    def prefetch(self) -> int:
        return resolve_prefetch(self.prefetch_spec, self.threads)


def cells_for_sweep(
    kinds: Iterable[str], threads: list[int], specs: list[str], prefetch_threads: int, *, grid: str, **common: Any
) -> list[Cell]:
    """The sweep's cells: ``cross`` = threads at Dramatiq's default prefetch + prefetch specs at
    ``prefetch_threads``; ``full`` = every threads x spec. Cells with the same effective prefetch are run once."""
    cells: list[Cell] = []
    seen: set[tuple[str, int, int]] = set()
    for kind in kinds:
        pairs = [(t, s) for t in threads for s in specs] if grid == "full" else []
        pairs = pairs or [(t, DEFAULT_PREFETCH) for t in threads] + [(prefetch_threads, s) for s in specs]
        for t, spec in pairs:
            cell = Cell(kind, 1, t, spec, **common)
            if (kind, t, cell.prefetch) not in seen:
                seen.add((kind, t, cell.prefetch))
                cells.append(cell)
    return cells
