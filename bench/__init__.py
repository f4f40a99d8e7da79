"""Benchmarks: ``python -m bench`` (``make bench``) runs them all; see docs/benchmarks.md.

* ``bench/*.py``: the commands (``suite.py`` behind ``python -m bench``, ``tracing_overhead.py``,
  ``api_latency.py``, ``otlp_down.py`` and the micro-benchmarks); each parses its options and calls the others.
* ``bench/workload/``: what is measured, the code that runs in the measured processes (the bench actors, the
  broker variants, the API app, the producer, the sweep's cells).
* ``bench/harness/``: what runs and times it (processes, the OTLP sink, RabbitMQ vhosts, interleaved rounds,
  /proc readings).
* ``bench/report/``: tables, ratios, the plot and the generated block of docs/benchmarks.md, from raw results.

Imports go downwards only: commands > harness > report > workload.
"""

from __future__ import annotations

__all__: list[str] = []
