"""The collector: OTLP protobuf in, store rows out; 503 (which exporters retry) when it cannot store."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cli.dev.collector import StoreSink
from cli.tracestore.store import TraceStore
from otlp_receiver import OtlpReceiver


def finished_spans() -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "tracedq-api"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /orders"), tracer.start_as_current_span("send orders"):
        pass
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def post(endpoint: str, body: bytes) -> int:
    request = urllib.request.Request(
        f"{endpoint}/v1/traces", data=body, headers={"Content-Type": "application/x-protobuf"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_batch_is_answered_200_once_stored(tmp_path: Path) -> None:
    with TraceStore(tmp_path / "t.db", create=True) as store, OtlpReceiver(sink=(sink := StoreSink(store))) as rx:
        assert post(rx.endpoint, finished_spans()) == 200
        assert rx.spans == []  # nothing kept in memory: it is in the store
        (trace_id,) = store.traces_newest_first()
        spans = store.spans(trace_id)
    assert [(s.name, s.service) for s in spans] == [("POST /orders", "tracedq-api"), ("send orders", "tracedq-api")]
    assert spans[1].parent_id == spans[0].span_id
    assert sink.spans == 2


def test_a_batch_the_store_cannot_take_is_answered_503(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = TraceStore(tmp_path / "t.db", create=True)
    sink = StoreSink(store)
    store.close()  # every write fails now
    with OtlpReceiver(sink=sink) as rx:
        assert post(rx.endpoint, finished_spans()) == 503
        assert rx.errors[0].startswith("sink: ProgrammingError: Cannot operate on a closed database")
    assert capsys.readouterr().out.startswith(f"cannot write {store.path} (1 batches refused so far): ")
