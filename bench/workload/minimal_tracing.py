"""The floor of the overhead benchmark's variants: a minimal tracing middleware on the OpenTelemetry SDK.

``sdk_floor`` and ``minimal_bsp`` (``bench/workload/overhead_variants.py``) put it on a plain broker, so the table
shows what making SDK spans costs at all, before anything of ours.
"""

from __future__ import annotations

from contextvars import Token
from typing import TYPE_CHECKING, Any

import dramatiq

if TYPE_CHECKING:
    from opentelemetry.context import Context

__all__ = ["MinimalTracing"]


class MinimalTracing(dramatiq.Middleware):
    """The floor: one SDK span per send and per delivery, context in ``options["trace_context"]``, nothing else.

    OpenTelemetry is imported when the middleware is made, so ``plain`` never loads it.

    Args:
        tracer: an SDK tracer.
    """

    def __init__(self, tracer: Any) -> None:
        from opentelemetry import context, propagate, trace
        from opentelemetry.semconv._incubating.attributes import messaging_attributes as keys

        self.tracer, self.context, self.propagate, self.trace = tracer, context, propagate, trace
        self.system, self.destination, self.message_id = (
            keys.MESSAGING_SYSTEM,
            keys.MESSAGING_DESTINATION_NAME,
            keys.MESSAGING_MESSAGE_ID,
        )
        self.sends: dict[str, Any] = {}
        self.deliveries: dict[str, tuple[Any, Token[Context]]] = {}

    def before_enqueue(self, broker: Any, message: Any, delay: int) -> None:
        attributes = {self.system: "rabbitmq", self.destination: message.queue_name}
        kind = self.trace.SpanKind.PRODUCER
        span = self.tracer.start_span(f"send {message.queue_name}", kind=kind, attributes=attributes)
        carrier: dict[str, str] = {}
        self.propagate.inject(carrier, context=self.trace.set_span_in_context(span))
        message.options["trace_context"] = carrier
        self.sends[message.message_id] = span

    def after_enqueue(self, broker: Any, message: Any, delay: int) -> None:
        span = self.sends.pop(message.message_id, None)
        if span is not None:
            span.end()

    def before_process_message(self, broker: Any, message: Any) -> None:
        parent = self.propagate.extract(message.options.get("trace_context") or {})
        attributes = {self.system: "rabbitmq", self.message_id: message.message_id}
        kind = self.trace.SpanKind.CONSUMER
        span = self.tracer.start_span(f"process {message.queue_name}", context=parent, kind=kind, attributes=attributes)
        token = self.context.attach(self.trace.set_span_in_context(span, parent))
        self.deliveries[message.message_id] = (span, token)

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        entry = self.deliveries.pop(message.message_id, None)
        if entry is None:
            return
        span, token = entry
        if exception is not None:
            span.record_exception(exception)
            span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, str(exception)))
        span.end()
        self.context.detach(token)

    after_skip_message = after_process_message
