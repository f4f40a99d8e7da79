"""The attributes our instrumentation records for one consumed message, for the micro-benchmarks to encode and record.

``bench/otlp_encoding_cost.py`` encodes process spans carrying :data:`PROCESS_SPAN` (and the first four of them,
what a minimal middleware sets); ``bench/histogram_record_cost.py`` records histograms with :data:`METRIC`, the
subset ``Metrics`` puts on its per-message histograms.
"""

from __future__ import annotations

from opentelemetry.util.types import AnyValue

from observability import semconv

__all__ = ["METRIC", "PROCESS_SPAN"]

#: A RabbitMQ process span's attributes as ``Tracing`` sets them on a first, successful delivery.
PROCESS_SPAN: dict[str, AnyValue] = {
    semconv.MESSAGING_SYSTEM: "rabbitmq",
    semconv.MESSAGING_OPERATION_TYPE: "process",
    semconv.MESSAGING_OPERATION_NAME: "process",
    semconv.MESSAGING_DESTINATION_NAME: "orders",
    semconv.MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY: "orders",
    semconv.SERVER_ADDRESS: "127.0.0.1",
    semconv.SERVER_PORT: 5672,
    semconv.MESSAGING_MESSAGE_ID: "3f04eb50-92a9-40f1-9bb3-c5f5650aed8e",
    semconv.ACTOR_NAME: "place_order",
    semconv.RETRIES: 0,
    semconv.MAX_RETRIES: 20,
    semconv.QUEUE_WAIT_MS: 3,
    semconv.REDELIVERED: False,
    semconv.MESSAGING_RABBITMQ_MESSAGE_DELIVERY_TAG: 12345,
    semconv.OUTCOME: "success",
}
_METRIC_KEYS = (
    semconv.MESSAGING_SYSTEM,
    semconv.MESSAGING_DESTINATION_NAME,
    semconv.MESSAGING_OPERATION_NAME,
    semconv.ACTOR_NAME,
    semconv.OUTCOME,
)
#: The attribute set of a per-message histogram record, with the span's values.
METRIC: dict[str, AnyValue] = {key: PROCESS_SPAN[key] for key in _METRIC_KEYS}
