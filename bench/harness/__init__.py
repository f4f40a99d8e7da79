"""What runs the benchmarks: processes, the OTLP sink, RabbitMQ, rounds, timing and /proc readings.

The harness starts the workload (``bench.workload``) in fresh processes and measures it; ``bench.report`` turns
its results into tables.
"""

from __future__ import annotations

__all__: list[str] = []
