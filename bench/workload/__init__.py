"""What the benchmarks measure: the bench actors and their kinds, and the broker variants of the overhead benchmark.

This is the code that runs inside the measured worker processes (``dramatiq bench.workload.worker_actors``, the
overhead benchmark's children). It imports neither the harness nor the report.
"""

from __future__ import annotations

__all__: list[str] = []
