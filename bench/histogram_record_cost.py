"""Micro-benchmark: one SDK histogram ``record`` by the number of metric readers, inside and outside a span.

``Metrics`` makes three histogram records per consumed message (queue wait, process duration, end to end),
with attribute sets like these. The SDK processes every record once per reader, so a worker tree's two readers
(OTLP push and the Prometheus endpoint) double the per-reader part; inside a sampled span the default trace-based
exemplar filter adds an exemplar offer. Interleaved repeats, best of each, microseconds per record.

    uv run --locked python bench/histogram_record_cost.py [--number 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import timeit
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry import trace
from opentelemetry.metrics import Histogram
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from bench.workload.span_attributes import METRIC
from observability.instruments import DURATION_BUCKETS

_ATTRIBUTES = METRIC


def _histogram(readers: int, exemplars: bool) -> Histogram:
    provider = MeterProvider(
        metric_readers=[InMemoryMetricReader() for _ in range(readers)],
        exemplar_filter=None if exemplars else AlwaysOffExemplarFilter(),
    )
    return provider.get_meter("bench").create_histogram(
        "bench.duration", unit="s", explicit_bucket_boundaries_advisory=DURATION_BUCKETS
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    span = TracerProvider().get_tracer("bench").start_span("process")
    cases = [
        (f"{readers} reader(s), {where}", readers, in_span, exemplars)
        for in_span, exemplars, where in (
            (False, True, "no span"),
            (True, True, "in a sampled span"),
            (True, False, "in a span, exemplars off"),
        )
        for readers in (0, 1, 2)
    ]
    best = {label: float("inf") for label, *_ in cases}
    for _ in range(args.repeat):
        for label, readers, in_span, exemplars in cases:
            histogram = _histogram(readers, exemplars)
            with trace.use_span(span) if in_span else contextlib.nullcontext():
                seconds = timeit.timeit(functools.partial(histogram.record, 0.001, _ATTRIBUTES), number=args.number)
            best[label] = min(best[label], seconds / args.number * 1e6)
    for label, microseconds in best.items():
        print(f"{label:40} {microseconds:6.1f} µs per record")


if __name__ == "__main__":
    main()
