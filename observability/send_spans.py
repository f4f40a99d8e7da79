"""The producer side of ``Tracing``: one ``send <queue>`` span per publish, and the trace context it carries.

The send span wraps the broker's own ``enqueue`` (``observability/publish_watchers.py``, installed on the broker
instance the first time an actor or queue is declared) rather than living in ``before_enqueue``/
``after_enqueue``: RabbitMQ's reconnect loop fires ``before_enqueue`` several times for one message and
never fires ``after_enqueue`` when the publish fails, so hook-only spans either duplicate or leak.

A message the worker moves off a delay queue is published again on a consumer thread; its send span (a
``dramatiq.delayed_hop``) continues from the context the message carries, not from the thread's.

:class:`SendSpans` is a base class of ``Tracing`` rather than a collaborator it calls, so a publish pays no
extra Python frame for the split.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar, Token
from typing import Any

from dramatiq.broker import Broker, MessageProxy
from dramatiq.common import dq_name
from dramatiq.message import Message
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, Tracer

from observability import semconv
from observability.broker_facts import broker_attributes
from observability.exception_events import record_exception
from observability.failure_reporting import failure_reporter
from observability.personal_data import described
from observability.process_spans import current_delivery, qualified_name
from observability.propagation import extract_context, inject_context, read_carrier
from observability.publish_watchers import PublishWatchingMiddleware

__all__ = ["SendSpans"]

# The logger of the Tracing middleware, whose half this is.
_hook_failed = failure_reporter(logging.getLogger("observability.tracing"), "tracing")


class _Send:
    """One publish in progress: its span, and (in a context var) so hooks inside ``enqueue`` can find it."""

    __slots__ = ("attempts", "context_token", "message_id", "send_token", "span")

    def __init__(self, message_id: str, span: trace.Span) -> None:
        self.message_id = message_id
        self.span = span
        self.attempts = 0
        self.context_token: Token[otel_context.Context] | None = None
        self.send_token: Token[_Send | None] | None = None


_current_send: ContextVar[_Send | None] = ContextVar("tracing_current_send", default=None)


class SendSpans(PublishWatchingMiddleware):
    """Send spans for every publish through the brokers this middleware watches.

    Subclasses provide the tracer, the propagator and whether to capture texts (``Tracing`` does).
    """

    propagator: TextMapPropagator | None
    capture_args: bool

    def __init__(self) -> None:
        # message_id -> eta of messages pulled off a delay queue and waiting for their hop.
        self._pending_hops: dict[str, int] = {}

    @property
    def tracer(self) -> Tracer:
        raise NotImplementedError

    def publish_started(self, broker: Broker, message: Message[Any], delay: int | None) -> _Send:
        queue = dq_name(message.queue_name) if delay is not None else message.queue_name
        attributes = dict(broker_attributes(broker, queue, "send"))
        attributes[semconv.MESSAGING_MESSAGE_ID] = message.message_id
        attributes[semconv.ACTOR_NAME] = message.actor_name
        eta = self._pending_hops.pop(message.message_id, None) if delay is None else None
        if eta is not None:
            # A delay-queue hop runs on a consumer thread whose ambient context belongs to nobody:
            # continue from the context the message itself carries.
            carrier, _ = read_carrier(message.options)
            parent = extract_context(carrier, self.propagator) if carrier else otel_context.Context()
            attributes[semconv.DELAYED_HOP] = True
            attributes[semconv.ETA] = eta
        else:
            parent = otel_context.get_current()
        if delay is not None:
            attributes[semconv.DELAY_MS] = delay
            delivery = current_delivery.get()
            if delivery is not None and delivery.message_id == message.message_id:
                delivery.retry_delay_ms = delay
        span = self.tracer.start_span(
            semconv.span_name("send", queue), context=parent, kind=SpanKind.PRODUCER, attributes=attributes
        )
        send = _Send(message.message_id, span)
        context = trace.set_span_in_context(span, parent)
        try:
            inject_context(message.options, context, self.propagator, ready_at=eta)
        except Exception:
            _hook_failed("could not inject trace context")  # the message leaves without it; the span still ends
        send.context_token = otel_context.attach(context)
        send.send_token = _current_send.set(send)
        return send

    def publish_ended(self, state: object, exception: BaseException | None) -> None:
        assert isinstance(state, _Send)
        span = state.span
        try:
            if state.send_token is not None:
                _current_send.reset(state.send_token)
            if state.context_token is not None:
                otel_context.detach(state.context_token)
            if exception is not None:
                self._fail_send(state, exception)
            if state.attempts > 1 and span.is_recording():
                span.set_attribute(semconv.PUBLISH_ATTEMPTS, state.attempts)
        except Exception:
            _hook_failed("could not finish send span")
        finally:
            span.end()

    def _fail_send(self, send: _Send, exc: BaseException) -> None:
        record_exception(send.span, exc, capture=self.capture_args)
        send.span.set_status(trace.Status(trace.StatusCode.ERROR, described(exc, capture=self.capture_args)))
        send.span.set_attribute(semconv.ERROR_TYPE, qualified_name(exc))
        delivery = current_delivery.get()
        if delivery is not None and delivery.message_id == send.message_id:
            # Retries enqueues from inside emit_after, which swallows this error and acks the
            # message: without this mark the message would vanish without a trace.
            delivery.retry_enqueue_failed = True

    def before_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        send = _current_send.get()
        if send is not None and send.message_id == message.message_id:
            send.attempts += 1

    def before_delay_message(self, broker: Broker, message: MessageProxy) -> None:
        try:
            eta = message.options.get("eta")
            self._pending_hops[message.message_id] = eta if isinstance(eta, int) else int(time.time() * 1000)
        except Exception:
            _hook_failed("could not record delayed message")
