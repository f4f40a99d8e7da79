"""What the export process pays per span: the SDK's OTLP protobuf encoding, against what a collector pays to decode.

Since span export moved to an export process (``observability/sdk/span_pipe.py``) the worker no longer encodes,
but on a two-core machine the export process's CPU still competes with the worker and RabbitMQ. This times the
SDK's own encoder (``encode_spans(...).SerializeToString()``, what its OTLP/HTTP exporter runs) for process spans
carrying our attribute set (15 attributes on RabbitMQ) and the 4 of a minimal middleware, and the protobuf
decode of the same request, per span.

    uv run --locked python bench/otlp_encoding_cost.py [--spans 512] [--number 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import functools
import sys
import timeit
from collections.abc import Callable, Mapping
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util.types import AnyValue

from bench.workload.span_attributes import PROCESS_SPAN
from observability import semconv

OURS = PROCESS_SPAN
MINIMAL = dict(list(OURS.items())[:4])


def spans(attributes: Mapping[str, AnyValue], count: int) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("observability.dramatiq", schema_url=semconv.SCHEMA_URL)
    for _ in range(count):
        tracer.start_span("process orders", attributes=attributes).end()
    return list(exporter.get_finished_spans())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=512, help="spans per request (the export batch size)")
    parser.add_argument("--number", type=int, default=20, help="requests per timing")
    parser.add_argument("--repeat", type=int, default=5, help="timings, best kept")
    args = parser.parse_args()
    per_span = 1e6 / (args.number * args.spans)
    print(f"µs per span, best of {args.repeat} x {args.number} requests of {args.spans} spans")
    for label, attributes in (("ours (15 attributes)", OURS), ("minimal (4 attributes)", MINIMAL)):
        batch = spans(attributes, args.spans)
        data = encode_spans(batch).SerializeToString()
        encode = best(functools.partial(_encode, batch), args)
        decode = best(functools.partial(ExportTraceServiceRequest.FromString, data), args)
        size = len(data) / args.spans
        print(f"  {label:<24} encode {encode * per_span:6.1f}   decode {decode * per_span:5.1f}   {size:.0f} B")


def _encode(batch: list[ReadableSpan]) -> bytes:
    encoded: bytes = encode_spans(batch).SerializeToString()  # what the SDK's OTLP/HTTP exporter runs per batch
    return encoded


def best(function: Callable[[], object], args: argparse.Namespace) -> float:
    return min(timeit.repeat(function, number=args.number, repeat=args.repeat))


if __name__ == "__main__":
    main()
