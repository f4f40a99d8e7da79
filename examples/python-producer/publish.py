"""Publish one message to a tracedq actor with pika and the OpenTelemetry SDK, without tracedq's code.

What a Python service that does not use Dramatiq does (docs/wire-format.md)::

    pip install pika opentelemetry-sdk opentelemetry-exporter-otlp-proto-http
    python publish.py users register_user \
        '{"schema_version": 1, "user_id": "u-1", "email": "ada@example.com", "name": "Ada"}'

``AMQP_URL`` (default ``amqp://guest:guest@127.0.0.1:5672/``) names the broker; the span goes to the OTLP/HTTP
collector at ``OTEL_EXPORTER_OTLP_ENDPOINT`` (default ``http://localhost:4318``). On success it prints one JSON
line: ``{"trace_id", "span_id", "message_id"}``. Exit 1 when RabbitMQ returns the message (no such queue),
exit 2 on a usage error.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from typing import Any

import pika
import pika.exceptions
from opentelemetry import propagate
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

USAGE = "usage: python publish.py QUEUE ACTOR_NAME PAYLOAD_JSON"
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"


def parse_args(argv: list[str]) -> tuple[str, str, dict[str, Any]]:
    """``(queue, actor_name, payload)``; ``ValueError`` saying what is wrong with the arguments."""
    if len(argv) != 3:
        raise ValueError(f"expected 3 arguments, got {len(argv)}")
    queue, actor_name, payload_json = argv
    try:
        payload = json.loads(payload_json)
    except json.JSONDecodeError as exc:
        raise ValueError(f"PAYLOAD_JSON is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValueError("PAYLOAD_JSON must be a JSON object (the actor payload, see docs/schemas/)")
    return queue, actor_name, payload


def publish(url: str, queue: str, body: bytes) -> None:
    """Publish with confirms and ``mandatory``: pika raises ``UnroutableError`` when no queue took the message."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            exchange="",
            routing_key=queue,
            body=body,
            properties=pika.BasicProperties(
                content_type="application/json", delivery_mode=pika.DeliveryMode.Persistent
            ),
            mandatory=True,
        )
    finally:
        connection.close()


def main(argv: list[str]) -> int:
    try:
        queue, actor_name, payload = parse_args(argv)
    except ValueError as exc:
        print(f"{USAGE}\nerror: {exc}", file=sys.stderr)
        return 2
    service_name = os.environ.get("OTEL_SERVICE_NAME", "python-producer")
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    tracer = provider.get_tracer("tracedq-python-producer")
    message_id = str(uuid.uuid4())
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.destination.name": queue,
        "messaging.message.id": message_id,
    }
    try:
        with tracer.start_as_current_span(f"send {queue}", kind=SpanKind.PRODUCER, attributes=attributes) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)  # the current context: this span, and any baggage set around it
            message = {
                "queue_name": queue,
                "actor_name": actor_name,
                "args": [payload],
                "kwargs": {},
                "options": {"trace_context": carrier},
                "message_id": message_id,
                "message_timestamp": int(time.time() * 1000),
            }
            try:
                publish(os.environ.get("AMQP_URL", DEFAULT_URL), queue, json.dumps(message).encode())
            except pika.exceptions.UnroutableError:
                span.set_status(StatusCode.ERROR, "returned: NO_ROUTE")
                print(
                    f"RabbitMQ returned message {message_id} (312 NO_ROUTE): no queue named {queue!r} exists. "
                    "Queues are declared by the workers (and Python producers); "
                    "check the name, or start a worker first.",
                    file=sys.stderr,
                )
                return 1
            context = span.get_span_context()
    finally:
        provider.shutdown()  # flushes the span to the collector
    ids = {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}", "message_id": message_id}
    print(json.dumps(ids))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
