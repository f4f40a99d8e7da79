"""The OTLP receiver reads the request bodies real exporters send (Node.js's streams them chunked); its counting
process, the benchmarks' sink, counts spans per operation."""

from __future__ import annotations

import gzip
import http.client
import json
import subprocess
import sys
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from otlp_receiver import OtlpReceiver

ROOT = Path(__file__).resolve().parents[2]


def _request(name: str) -> bytes:
    span = Span(trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), name=name, kind=Span.SPAN_KIND_PRODUCER)
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    ).SerializeToString()


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_chunked_request_is_read_whole_and_the_connection_stays_usable(gzipped: bool) -> None:
    with OtlpReceiver() as receiver:
        connection = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=10)
        try:
            statuses = []
            for name in ("first", "second"):  # the second request on the same connection starts where it should
                body = _request(name)
                headers = {"Content-Type": "application/x-protobuf"}
                if gzipped:
                    body = gzip.compress(body)
                    headers["Content-Encoding"] = "gzip"
                chunks = iter([body[:7], body[7:]])  # an iterable body: http.client sends it chunked
                connection.request("POST", "/v1/traces", body=chunks, headers=headers, encode_chunked=True)
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
        finally:
            connection.close()
        assert statuses == [200, 200]
        assert receiver.errors == []
        assert [(s.name, s.trace_id, s.span_id) for s in receiver.spans] == [
            ("first", "0102030405060708090a0b0c0d0e0f10", "0102030405060708"),
            ("second", "0102030405060708090a0b0c0d0e0f10", "0102030405060708"),
        ]


def test_the_counting_process_counts_spans_per_operation_and_resets() -> None:
    """``python -m otlp_receiver.counting``: GET /count, POST /reset, deflate bodies; logs are not served."""
    process = subprocess.Popen(
        [sys.executable, "-m", "otlp_receiver.counting", "--port", "0"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert process.stdout is not None
        word, port = process.stdout.readline().split()
        assert word == "listening"
        base = f"http://127.0.0.1:{port}"
        bodies = [(_request("send orders"), None), (zlib.compress(_request("process orders")), "deflate")]
        for body, encoding in bodies:
            headers = {"Content-Type": "application/x-protobuf", **({"Content-Encoding": encoding} if encoding else {})}
            with urllib.request.urlopen(urllib.request.Request(f"{base}/v1/traces", body, headers), timeout=10) as r:
                assert r.status == 200
        with pytest.raises(urllib.error.HTTPError) as logs:
            urllib.request.urlopen(urllib.request.Request(f"{base}/v1/logs", b"", {}), timeout=10)
        assert logs.value.code == 404

        def call(path: str, data: bytes | None = None) -> dict[str, object]:
            with urllib.request.urlopen(urllib.request.Request(base + path, data), timeout=10) as response:
                return dict(json.load(response))

        counts = {
            "spans": 2,
            "requests": 2,
            "bytes": sum(len(b) for b, _ in bodies),
            "by_name": {"send": 1, "process": 1},
        }
        assert call("/count") == counts
        assert call("/reset", b"") == counts
        assert call("/count") == {"spans": 0, "requests": 0, "bytes": 0, "by_name": {}}
    finally:
        process.terminate()
        process.wait(timeout=10)
