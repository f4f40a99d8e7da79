"""The OTLP receiver reads the request bodies real exporters send: Node.js's streams them chunked."""

from __future__ import annotations

import gzip
import http.client

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from tests.environment.receiver import OtlpReceiver


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
