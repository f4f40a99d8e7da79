"""The bench actors' names, queues and work, shared by the worker module and the harness (no imports here:
worker processes load it, and the harness must not load the production broker)."""

from __future__ import annotations

__all__ = ["CPU_SECONDS", "IO_SECONDS", "KINDS", "RECORDS_ENV"]

#: The file the bench actors append their records to.
RECORDS_ENV = "BENCH_RECORDS"
#: CPU time each ``bench_cpu`` message burns, and how long each ``bench_io`` message sleeps.
CPU_SECONDS = 0.002
IO_SECONDS = 0.020
#: kind -> (actor name, queue name)
KINDS = {"noop": ("bench_noop", "bench_noop"), "cpu": ("bench_cpu", "bench_cpu"), "io": ("bench_io", "bench_io")}
