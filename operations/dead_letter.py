"""One message of a dead-letter queue, decoded: its ids, why it died (AMQP headers, traceback), its trace.

Nothing here talks to RabbitMQ: :mod:`operations.dead_letter_queue` fetches the messages, this reads them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from messaging import dead_lettering
from observability.propagation import extract_context, read_carrier

__all__ = ["UNDECODABLE", "DeadLetter"]

#: The reason shown for a body that is not a JSON object.
UNDECODABLE = "undecodable"


@dataclass
class DeadLetter:
    """One message fetched (unacked) from an XQ."""

    delivery_tag: int
    body: bytes
    headers: dict[str, Any]
    message: dict[str, Any] | None  # None: not a JSON object (shown as "undecodable")

    @classmethod
    def from_delivery(cls, tag: int, properties: Any, body: bytes) -> DeadLetter:
        try:
            decoded = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            decoded = None
        headers = getattr(properties, "headers", None)
        return cls(
            delivery_tag=tag,
            body=body,
            headers=headers if isinstance(headers, dict) else {},
            message=decoded if isinstance(decoded, dict) else None,
        )

    @property
    def options(self) -> dict[str, Any]:
        options = (self.message or {}).get("options")
        return options if isinstance(options, dict) else {}

    def _text(self, key: str) -> str | None:
        value = (self.message or {}).get(key)
        return value if isinstance(value, str) else None

    @property
    def message_id(self) -> str | None:
        return self._text("message_id")

    @property
    def actor_name(self) -> str | None:
        return self._text("actor_name")

    @property
    def queue_name(self) -> str | None:
        return self._text("queue_name")

    @property
    def retries(self) -> int | None:
        value = self.options.get("retries")
        return value if isinstance(value, int) else None

    @property
    def traceback(self) -> str | None:
        value = self.options.get("traceback")
        return value if isinstance(value, str) and value.strip() else None

    def _header(self, name: str) -> Any:
        value = self.headers.get(dead_lettering.Header[name])
        return value.decode(errors="replace") if isinstance(value, bytes) else value

    @property
    def dead_letter_reason(self) -> str | None:
        """The worker's ``tracedq-dead-letter-reason`` (messaging/dead_lettering.py); None on older dead letters."""
        value = self._header("REASON")
        return value if isinstance(value, str) else None

    @property
    def attempts(self) -> int | None:
        value = self._header("ATTEMPTS")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def dead_lettered_at(self) -> str | None:
        value = self._header("DEAD_LETTERED_AT")
        return value if isinstance(value, str) else None

    @property
    def reason(self) -> str:
        """Why it died: the worker's reason and exception (``throws: InvalidPayload: ...``), else what we know.

        Dead letters the worker published carry their reason in headers. Older ones (or those RabbitMQ
        dead-lettered because the worker's publish failed) only have Dramatiq's stored traceback, which exists
        only when the message was re-enqueued for a retry, then RabbitMQ's ``x-death`` reason (``rejected``).
        """
        reason = self.dead_letter_reason
        if reason is not None:
            exception_type = self._header("EXCEPTION_TYPE")
            text = self._header("EXCEPTION_MESSAGE")
            detail = [str(exception_type).rpartition(".")[2]] if exception_type else []
            detail += [str(text)] if text else []
            return ": ".join([reason, *detail])
        if self.message is None:
            return UNDECODABLE
        if self.traceback is not None:
            lines = [line for line in self.traceback.strip().splitlines() if line.strip()]
            return lines[-1].strip()
        death = self.headers.get("x-death")
        if isinstance(death, list) and death and isinstance(death[0], dict):
            reason = death[0].get("reason")
            if isinstance(reason, bytes):
                reason = reason.decode(errors="replace")
            if isinstance(reason, str):
                return f"{reason} (no traceback stored)"
        return "unknown (no traceback stored)"

    @property
    def age_seconds(self) -> float | None:
        value = (self.message or {}).get("message_timestamp")
        if not isinstance(value, int | float) or isinstance(value, bool):
            return None
        return max(0.0, time.time() - value / 1000)

    @property
    def span_context(self) -> trace.SpanContext | None:
        """The span context the message's carrier points at (the last send before it died), if valid."""
        carrier, _ = read_carrier(self.options)
        if not carrier:
            return None
        context = trace.get_current_span(extract_context(carrier)).get_span_context()
        return context if context.is_valid else None

    @property
    def trace_id(self) -> str | None:
        """The original trace id (32 hex digits), from ``options.trace_context.traceparent``."""
        context = self.span_context
        return format(context.trace_id, "032x") if context is not None else None
