"""Paired micro-benchmark: the SDK's ``Span.record_exception`` against ``observability.exception_events``.

Both add the same ``exception`` event (ours without Python 3.11's ``^^^`` anchors) to a recording SDK span,
for an exception raised through ``--depth`` frames; interleaved repeats, best of each, and the ratio.

    uv run --locked python bench/exception_event.py [--depth 10] [--number 2000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.sdk.trace import TracerProvider

from observability.exception_events import record_exception


def _raise(depth: int) -> None:
    if depth == 0:
        raise ValueError("order 7 could not be placed")
    _raise(depth - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=10, help="frames between the raise and the handler")
    parser.add_argument("--number", type=int, default=2000, help="events per timing")
    parser.add_argument("--repeat", type=int, default=7, help="interleaved timings per variant")
    args = parser.parse_args()
    try:
        _raise(args.depth)
    except ValueError as exc:
        exception = exc
    # One recording span; its event list is bounded (128 by the SDK's span limits), so it does not grow.
    span = TracerProvider().get_tracer("bench").start_span("s")

    def sdk() -> None:
        span.record_exception(exception)

    def ours() -> None:
        record_exception(span, exception, capture=True)

    best = {"sdk": float("inf"), "ours": float("inf")}
    for _ in range(args.repeat):
        for name, function in (("sdk", sdk), ("ours", ours)):
            best[name] = min(best[name], timeit.timeit(function, number=args.number) / args.number * 1e6)
    print(f"Python {sys.version.split()[0]}, traceback depth {args.depth}, best of {args.repeat} x {args.number}")
    print(f"  Span.record_exception (SDK):            {best['sdk']:7.1f} µs per event")
    print(f"  exception_events.record_exception:      {best['ours']:7.1f} µs per event")
    print(f"  ours / SDK: {best['ours'] / best['sdk']:.2f}")


if __name__ == "__main__":
    main()
