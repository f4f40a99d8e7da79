"""Our OTLP encoder produces the same messages as the SDK's encoder, and is measured against it in bench/."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from observability.sdk.otlp_encoding import Encoder, encode_spans


def make_spans() -> list[ReadableSpan]:
    """Spans covering every field: kinds, remote parents, trace state, events, links, every value type."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "enc", "n": 3}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("enc.scope", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.44.0")
    other = provider.get_tracer("other.scope")
    remote = SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "value"), ("b", "c")]),
    )
    with tracer.start_as_current_span(
        "process q",
        context=trace.set_span_in_context(trace.NonRecordingSpan(remote)),
        kind=SpanKind.CONSUMER,
        attributes={
            "s": "text é",
            "b": True,
            "f": False,
            "i": 42,
            "neg": -7,
            "big": 2**62,
            "d": 1.5,
            "arr_s": ["a", "b"],
            "arr_i": [1, 2, 3],
            "arr_b": [True, False],
            "arr_d": [0.5],
        },
        links=[Link(remote, {"link.attr": "x"})],
    ) as span:
        span.add_event("exception", {"exception.type": "ValueError", "exception.message": "bad"})
        span.set_status(Status(StatusCode.ERROR, "bad value"))
        with other.start_as_current_span("inner", kind=SpanKind.PRODUCER):
            pass
    for kind in (SpanKind.INTERNAL, SpanKind.SERVER, SpanKind.CLIENT):
        tracer.start_span(f"kind {kind.name}", kind=kind).end()
    ok = tracer.start_span("ok")
    ok.set_status(Status(StatusCode.OK))
    ok.end()
    return list(exporter.get_finished_spans())


def decoded(data: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(data)
    return request


def test_our_bytes_decode_to_the_sdk_encoders_message() -> None:
    """Field for field, the request we write equals the one opentelemetry-exporter-otlp writes."""
    spans = make_spans()
    ours = decoded(encode_spans(spans))
    theirs = sdk_encode_spans(spans)
    assert ours == theirs
    assert len(ours.resource_spans[0].scope_spans) == 2


def test_cached_pairs_are_reused_and_still_correct_after_eviction() -> None:
    """A warm encoder (and one whose cache was cleared mid-way) still writes the same messages."""
    spans = make_spans()
    encoder = Encoder()
    first = encode_spans(spans, encoder)
    assert encode_spans(spans, encoder) == first
    encoder._pairs.clear()
    assert decoded(encode_spans(spans, encoder)) == sdk_encode_spans(spans)
