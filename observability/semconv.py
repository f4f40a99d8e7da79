"""Span names, attribute keys and metric names, in one place: no other module spells them.

The messaging keys are the OpenTelemetry semantic conventions' (1.44), written out rather than imported:
the conventions package is the SDK's dependency, not the API's, and the core must load without it.
``tests/unit/observability/test_semconv.py`` checks every one against that package. Dramatiq-specific
data has no convention (there is no generic retry or delivery count attribute), so it lives under our own
``dramatiq.`` namespace.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACTOR_NAME",
    "ARGS",
    "BROADCAST_INSTANCE_QUEUE",
    "DEAD_LETTERED",
    "DEAD_LETTER_ERROR",
    "DEAD_LETTER_QUEUE",
    "DEAD_LETTER_REASON",
    "DEFERRED",
    "DEFERRED_MS",
    "DELAYED_HOP",
    "DELAY_MS",
    "DUPLICATE",
    "ERROR_TYPE",
    "ETA",
    "EXCEPTION_ESCAPED",
    "EXCEPTION_EVENT",
    "EXCEPTION_MESSAGE",
    "EXCEPTION_STACKTRACE",
    "EXCEPTION_TYPE",
    "KWARGS",
    "LINK_KIND",
    "MAX_RETRIES",
    "MESSAGING_DESTINATION_NAME",
    "MESSAGING_MESSAGE_BODY_SIZE",
    "MESSAGING_MESSAGE_ID",
    "MESSAGING_OPERATION_NAME",
    "MESSAGING_OPERATION_TYPE",
    "MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY",
    "MESSAGING_RABBITMQ_MESSAGE_DELIVERY_TAG",
    "MESSAGING_SYSTEM",
    "METRIC_CONSUMED",
    "METRIC_DEAD_LETTERED",
    "METRIC_END_TO_END",
    "METRIC_IN_FLIGHT",
    "METRIC_OPERATION_DURATION",
    "METRIC_PROCESS_DURATION",
    "METRIC_QUEUE_WAIT",
    "METRIC_REDELIVERED",
    "METRIC_RETRIED",
    "METRIC_SENT",
    "METRIC_SKIPPED",
    "OUTCOME",
    "PUBLISH_ATTEMPTS",
    "QUEUE_WAIT_MS",
    "REDELIVERED",
    "REPLAYED_FROM_TRACE",
    "RETRIES",
    "RETRY_DELAY_MS",
    "SCHEDULE_CRON",
    "SCHEDULE_LATENESS_MS",
    "SCHEDULE_SCHEDULED_AT",
    "SCHEMA_URL",
    "SERVER_ADDRESS",
    "SERVER_PORT",
    "SKIPPED",
    "SKIP_REASON",
    "TRACE_CONTEXT_INVALID",
    "span_name",
]

SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.44.0"

# The messaging conventions' keys (Development stability; no RabbitMQ renames since 1.30).
MESSAGING_SYSTEM: Final = "messaging.system"
MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
MESSAGING_OPERATION_NAME: Final = "messaging.operation.name"
MESSAGING_DESTINATION_NAME: Final = "messaging.destination.name"
MESSAGING_MESSAGE_ID: Final = "messaging.message.id"
MESSAGING_MESSAGE_BODY_SIZE: Final = "messaging.message.body.size"
MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY: Final = "messaging.rabbitmq.destination.routing_key"
MESSAGING_RABBITMQ_MESSAGE_DELIVERY_TAG: Final = "messaging.rabbitmq.message.delivery_tag"
ERROR_TYPE: Final = "error.type"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"
EXCEPTION_ESCAPED: Final = "exception.escaped"
EXCEPTION_EVENT: Final = "exception"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"

# Our own keys: Dramatiq facts the messaging conventions have no name for.
ACTOR_NAME: Final = "dramatiq.actor.name"
RETRIES: Final = "dramatiq.message.retries"
MAX_RETRIES: Final = "dramatiq.message.max_retries"
QUEUE_WAIT_MS: Final = "dramatiq.message.queue_wait_ms"
REDELIVERED: Final = "dramatiq.message.redelivered"
DELAY_MS: Final = "dramatiq.message.delay_ms"
ETA: Final = "dramatiq.message.eta"
DELAYED_HOP: Final = "dramatiq.message.delayed_hop"
PUBLISH_ATTEMPTS: Final = "dramatiq.publish.attempts"
OUTCOME: Final = "dramatiq.message.outcome"
RETRY_DELAY_MS: Final = "dramatiq.retry.delay_ms"
DEAD_LETTERED: Final = "dramatiq.message.dead_lettered"
DEAD_LETTER_REASON: Final = "dramatiq.message.dead_letter_reason"
DEAD_LETTER_QUEUE: Final = "dramatiq.message.dead_letter_queue"
DEAD_LETTER_ERROR: Final = "dramatiq.message.dead_letter_error"
SKIPPED: Final = "dramatiq.message.skipped"
SKIP_REASON: Final = "dramatiq.message.skip_reason"
DUPLICATE: Final = "dramatiq.message.duplicate"
TRACE_CONTEXT_INVALID: Final = "dramatiq.trace_context.invalid"
ARGS: Final = "dramatiq.message.args"
KWARGS: Final = "dramatiq.message.kwargs"
DEFERRED: Final = "dramatiq.message.deferred"
DEFERRED_MS: Final = "dramatiq.message.deferred_ms"
BROADCAST_INSTANCE_QUEUE: Final = "dramatiq.broadcast.instance_queue"
SCHEDULE_CRON: Final = "dramatiq.schedule.cron"
SCHEDULE_SCHEDULED_AT: Final = "dramatiq.schedule.scheduled_at"
SCHEDULE_LATENESS_MS: Final = "dramatiq.schedule.lateness_ms"
REPLAYED_FROM_TRACE: Final = "dramatiq.replayed_from_trace"
LINK_KIND: Final = "dramatiq.link"

# Metric names: the messaging conventions' where they have one, ours under ``dramatiq.`` otherwise.
METRIC_SENT: Final = "messaging.client.sent.messages"
METRIC_CONSUMED: Final = "messaging.client.consumed.messages"
METRIC_OPERATION_DURATION: Final = "messaging.client.operation.duration"
METRIC_PROCESS_DURATION: Final = "messaging.process.duration"
METRIC_RETRIED: Final = "dramatiq.messages.retried"
METRIC_DEAD_LETTERED: Final = "dramatiq.messages.dead_lettered"
METRIC_SKIPPED: Final = "dramatiq.messages.skipped"
METRIC_REDELIVERED: Final = "dramatiq.messages.redelivered"
METRIC_IN_FLIGHT: Final = "dramatiq.messages.in_flight"
METRIC_QUEUE_WAIT: Final = "dramatiq.message.queue_wait"
METRIC_END_TO_END: Final = "dramatiq.message.end_to_end.duration"


def span_name(operation: str, destination: str) -> str:
    """Build a low-cardinality span name in the messaging convention's ``{operation} {destination}`` order.

    Args:
        operation: ``send``, ``process``, ``nack``, ``tick`` or ``replay``.
        destination: the queue (or routing key) name, never an id.

    Returns:
        The span name, e.g. ``"send orders"``.
    """
    return f"{operation} {destination}"
