"""Carry W3C trace context in ``message.options`` and read it back safely.

Dramatiq's RabbitMQ broker drops AMQP headers, so the only place context can travel is the JSON body.
We keep it under one namespaced key holding a flat ``dict[str, str]`` with the standard W3C field names
(``traceparent``, ``tracestate``, ``baggage``), so a producer in any language can write it with its own
text-map propagator (see ``docs/wire-format.md``). The key is overwritten at every enqueue, so retries
and delayed hops chain.

Everything read from a message is hostile until proven otherwise: a carrier of the wrong type, with
non-string values or over the size caps, is ignored (the message then starts a new trace) rather than
raising inside a worker hook.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator

__all__ = [
    "CARRIER_KEY",
    "DEFAULT_FIELD_CAP",
    "FIELD_CAPS",
    "MAX_CARRIER_BYTES",
    "MAX_CARRIER_FIELDS",
    "READY_AT_FIELD",
    "extract_context",
    "inject_context",
    "read_carrier",
    "ready_at",
]

CARRIER_KEY: Final = "trace_context"

# Dramatiq deletes ``eta`` when a delayed message hops from the delay queue to its real queue, but the
# queue wait a user cares about starts at the eta, not at the first send: the hop records it in the
# carrier (milliseconds since the epoch, as a string like every carrier field), which the next enqueue
# replaces, so it never outlives the hop and nothing else of ours is written into the options.
READY_AT_FIELD: Final = "ready-at"

# W3C caps: traceparent is 55 characters, tracestate at most 32 members (512 characters is the
# recommended propagation floor), baggage at most 8192 bytes. Anything larger is not a real carrier.
# Public because the published message schemas (docs/schemas/) state the same limits.
MAX_CARRIER_BYTES: Final = 9 * 1024
MAX_CARRIER_FIELDS: Final = 16
FIELD_CAPS: Final = {"traceparent": 128, "tracestate": 1024, "baggage": 8192}
DEFAULT_FIELD_CAP: Final = 1024


def inject_context(
    options: dict[str, Any],
    context: Context,
    propagator: TextMapPropagator | None = None,
    *,
    ready_at: int | None = None,
) -> None:
    """Write ``context`` into ``options[CARRIER_KEY]``, replacing any carrier already there.

    Args:
        options: the message options (mutated in place).
        context: the context whose span and baggage travel with the message.
        propagator: the text-map propagator to use; the global one (``OTEL_PROPAGATORS``) by default.
        ready_at: when a delayed message became due (ms since the epoch), recorded by its delay-queue hop.
    """
    carrier: dict[str, str] = {}
    (propagator or propagate.get_global_textmap()).inject(carrier, context=context)
    if ready_at is not None:
        carrier[READY_AT_FIELD] = str(ready_at)
    options[CARRIER_KEY] = carrier


def read_carrier(options: Mapping[str, Any]) -> tuple[dict[str, str] | None, bool]:
    """Return the message's carrier if it is well formed, and whether a present carrier was rejected.

    Args:
        options: the message options, as decoded from the wire.

    Returns:
        ``(carrier, invalid)``: ``carrier`` is ``None`` when absent or rejected; ``invalid`` is true when
        something was there but failed the type or size checks.
    """
    raw = options.get(CARRIER_KEY)
    if raw is None:
        return None, False
    if not isinstance(raw, dict) or len(raw) > MAX_CARRIER_FIELDS:
        return None, True
    total = 0
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return None, True
        if len(value) > FIELD_CAPS.get(key, DEFAULT_FIELD_CAP):
            return None, True
        total += len(key) + len(value)
    if total > MAX_CARRIER_BYTES:
        return None, True
    return raw, False


def extract_context(carrier: Mapping[str, str], propagator: TextMapPropagator | None = None) -> Context:
    """Build a context (remote span plus baggage) from a checked carrier.

    Args:
        carrier: a carrier returned by :func:`read_carrier`.
        propagator: the text-map propagator to use; the global one by default.

    Returns:
        The extracted context; an empty one when the carrier holds nothing the propagator accepts.
    """
    return (propagator or propagate.get_global_textmap()).extract(carrier, context=Context())


def ready_at(options: Mapping[str, Any]) -> int | None:
    """The due time a delay-queue hop recorded in the message's carrier, if it did (and it is well formed)."""
    carrier = options.get(CARRIER_KEY)
    value = carrier.get(READY_AT_FIELD) if isinstance(carrier, dict) else None
    return int(value) if isinstance(value, str) and value.isdigit() and len(value) <= 16 else None
