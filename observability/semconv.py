"""Span names and attribute keys, in one place.

The messaging keys come from the OpenTelemetry semantic-conventions package so a rename upstream is a
one-line change here. Dramatiq-specific data has no convention (there is no generic retry or delivery
count attribute), so it lives under our own ``dramatiq.`` namespace.
"""

from __future__ import annotations

from typing import Final

from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_DESTINATION_NAME,
    MESSAGING_MESSAGE_BODY_SIZE,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_NAME,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY,
    MESSAGING_RABBITMQ_MESSAGE_DELIVERY_TAG,
    MESSAGING_SYSTEM,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.schemas import Schemas

__all__ = [
    "ACTOR_NAME",
    "ARGS",
    "DEAD_LETTERED",
    "DEAD_LETTER_ERROR",
    "DEAD_LETTER_QUEUE",
    "DEAD_LETTER_REASON",
    "DELAYED_HOP",
    "DELAY_MS",
    "DUPLICATE",
    "ERROR_TYPE",
    "ETA",
    "KWARGS",
    "MAX_RETRIES",
    "MESSAGING_DESTINATION_NAME",
    "MESSAGING_MESSAGE_BODY_SIZE",
    "MESSAGING_MESSAGE_ID",
    "MESSAGING_OPERATION_NAME",
    "MESSAGING_OPERATION_TYPE",
    "MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY",
    "MESSAGING_RABBITMQ_MESSAGE_DELIVERY_TAG",
    "MESSAGING_SYSTEM",
    "OUTCOME",
    "PUBLISH_ATTEMPTS",
    "QUEUE_WAIT_MS",
    "REDELIVERED",
    "RETRIES",
    "RETRY_DELAY_MS",
    "SCHEMA_URL",
    "SERVER_ADDRESS",
    "SERVER_PORT",
    "SKIPPED",
    "SKIP_REASON",
    "TRACE_CONTEXT_INVALID",
    "span_name",
]

SCHEMA_URL: Final = Schemas.V1_44_0.value

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


def span_name(operation: str, destination: str) -> str:
    """Build a low-cardinality span name in the messaging convention's ``{operation} {destination}`` order.

    Args:
        operation: ``send``, ``process`` or ``nack``.
        destination: the queue (or routing key) name, never an id.

    Returns:
        The span name, e.g. ``"send orders"``.
    """
    return f"{operation} {destination}"
