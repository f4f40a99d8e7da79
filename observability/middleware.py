"""The ``Tracing`` middleware: one trace per message, end to end, through every Dramatiq hop.

It must sit first in the middleware list (:func:`observability.install` puts it there). Dramatiq runs
``after_*`` hooks in reverse order, so a process span opened first closes last and stays current while
``Retries``, ``Pipelines``, ``Callbacks`` and ``GroupCallbacks`` enqueue follow-up messages and while the
worker logs "Failed to process message": all of those then land in the same trace.

The send span wraps the broker's own ``enqueue`` (installed on the broker instance the first time an
actor or queue is declared) rather than living in ``before_enqueue``/``after_enqueue``: RabbitMQ's
reconnect loop fires ``before_enqueue`` several times for one message and never fires ``after_enqueue``
when the publish fails, so hook-only spans either duplicate or leak.

Every hook swallows its own errors (a tracing bug must never lose a message) and every context attached
for a message is detached in the matching after hook, so nothing leaks to the next message on a thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any, Final, Literal

import dramatiq
from dramatiq.broker import Broker, MessageProxy
from dramatiq.common import dq_name, xq_name
from dramatiq.errors import ActorNotFound
from dramatiq.message import Message
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import get_logger_provider
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Link, SpanKind, Tracer, TracerProvider

from observability import semconv
from observability.delivery import Delivery, broker_attributes, finish_delivery, qualified_name, start_delivery
from observability.hooks import failure_reporter, force_flush
from observability.propagation import READY_AT_KEY, extract_context, inject_context, read_carrier

__all__ = ["ParentPolicy", "Tracing"]

ParentPolicy = Literal["parent", "link"]

_STATE_ATTR: Final = "_tracing_delivery"
_NACK_ATTR: Final = "_tracing_nack"
_stdlib_log = logging.getLogger(__name__)
_hook_failed = failure_reporter(_stdlib_log, "tracing")


class _Send:
    """The publish in progress on this thread (context var), so hooks inside ``enqueue`` can find it."""

    __slots__ = ("attempts", "message_id")

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.attempts = 0


_current_send: ContextVar[_Send | None] = ContextVar("tracing_current_send", default=None)
_current_delivery: ContextVar[Delivery | None] = ContextVar("tracing_current_delivery", default=None)


class Tracing(dramatiq.Middleware):
    """Emit OpenTelemetry send/process spans and carry W3C context in ``message.options``.

    Args:
        tracer_provider: where spans go; the global provider (looked up on first use) by default.
        propagator: the text-map propagator; the global one (``OTEL_PROPAGATORS``) by default.
        parent_policy: ``"parent"`` makes the delivering send span the parent of the process span (one
            trace in Jaeger, the default); ``"link"`` starts a new trace per delivery linked to the send,
            the messaging conventions' default.
        capture_args: record actor args/kwargs (truncated) on process spans. Off by default: arguments
            often hold personal data.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
        parent_policy: ParentPolicy = "parent",
        capture_args: bool = False,
    ) -> None:
        if parent_policy not in ("parent", "link"):
            raise ValueError(f"parent_policy must be 'parent' or 'link', not {parent_policy!r}")
        self._tracer_provider = tracer_provider
        self._tracer: Tracer | None = None
        self.propagator = propagator
        self.parent_policy: ParentPolicy = parent_policy
        self.capture_args = capture_args
        # message_id -> eta of messages pulled off a delay queue and waiting for their hop.
        self._pending_hops: dict[str, int] = {}

    @property
    def tracer(self) -> Tracer:
        """The tracer, created on first use so a provider configured after import is honoured."""
        if self._tracer is None:
            provider = self._tracer_provider or trace.get_tracer_provider()
            self._tracer = provider.get_tracer("observability.dramatiq", schema_url=semconv.SCHEMA_URL)
        return self._tracer

    # -- installing the send wrapper -------------------------------------------------------------

    def after_declare_actor(self, broker: Broker, actor: dramatiq.Actor[Any, Any]) -> None:
        self.instrument(broker)

    def after_declare_queue(self, broker: Broker, queue_name: str) -> None:
        self.instrument(broker)

    def instrument(self, broker: Broker) -> None:
        """Wrap ``broker.enqueue`` on this broker instance so every publish gets one send span. Idempotent."""
        if getattr(broker, "_tracing_instrumented", False):
            return
        original: Callable[..., Message[Any]] = broker.enqueue

        def enqueue(message: Message[Any], *, delay: int | None = None) -> Message[Any]:
            return self._traced_enqueue(broker, original, message, delay)

        broker.enqueue = enqueue  # type: ignore[method-assign]
        broker._tracing_instrumented = True  # type: ignore[attr-defined]

    # -- producer side ---------------------------------------------------------------------------

    def _traced_enqueue(
        self, broker: Broker, original: Callable[..., Message[Any]], message: Message[Any], delay: int | None
    ) -> Message[Any]:
        try:
            started = self._start_send(broker, message, delay)
        except Exception:
            _hook_failed("could not start send span")
            return original(message, delay=delay)
        span, token, send_token = started
        try:
            result = original(message, delay=delay)
        except BaseException as exc:
            self._fail_send(span, message, exc)
            raise
        finally:
            send = _current_send.get()
            _current_send.reset(send_token)
            otel_context.detach(token)
            if send is not None and send.attempts > 1 and span.is_recording():
                span.set_attribute(semconv.PUBLISH_ATTEMPTS, send.attempts)
            span.end()
        return result

    def _start_send(
        self, broker: Broker, message: Message[Any], delay: int | None
    ) -> tuple[trace.Span, Token[otel_context.Context], Token[_Send | None]]:
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
            message.options[READY_AT_KEY] = eta
        else:
            parent = otel_context.get_current()
        if delay is not None:
            attributes[semconv.DELAY_MS] = delay
            delivery = _current_delivery.get()
            if delivery is not None and delivery.message_id == message.message_id:
                delivery.retry_delay_ms = delay
        span = self.tracer.start_span(
            semconv.span_name("send", queue), context=parent, kind=SpanKind.PRODUCER, attributes=attributes
        )
        ctx = trace.set_span_in_context(span, parent)
        inject_context(message.options, ctx, self.propagator)
        return span, otel_context.attach(ctx), _current_send.set(_Send(message.message_id))

    def _fail_send(self, span: trace.Span, message: Message[Any], exc: BaseException) -> None:
        try:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
            span.set_attribute(semconv.ERROR_TYPE, qualified_name(exc))
            delivery = _current_delivery.get()
            if delivery is not None and delivery.message_id == message.message_id:
                # Retries enqueues from inside emit_after, which swallows this error and acks the
                # message: without this mark the message would vanish without a trace.
                delivery.retry_enqueue_failed = True
        except Exception:
            _hook_failed("could not record publish failure")

    def before_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        send = _current_send.get()
        if send is not None and send.message_id == message.message_id:
            send.attempts += 1

    # -- consumer side ---------------------------------------------------------------------------

    def before_delay_message(self, broker: Broker, message: MessageProxy) -> None:
        try:
            eta = message.options.get("eta")
            self._pending_hops[message.message_id] = eta if isinstance(eta, int) else int(time.time() * 1000)
        except Exception:
            _hook_failed("could not record delayed message")

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        try:
            delivery = start_delivery(self, broker, message, links=self.parent_policy == "link")
            delivery.delivery_token = _current_delivery.set(delivery)
            setattr(message, _STATE_ATTR, delivery)
        except Exception:
            _hook_failed("could not start process span")

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        self._end_delivery(broker, message, exception=exception, skipped=False)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        self._end_delivery(broker, message, exception=None, skipped=True)

    def _end_delivery(
        self, broker: Broker, message: MessageProxy, *, exception: BaseException | None, skipped: bool
    ) -> None:
        delivery: Delivery | None = message.__dict__.pop(_STATE_ATTR, None)
        if delivery is None:
            return
        try:
            finish_delivery(broker, message, delivery, exception=exception, skipped=skipped)
        except Exception:
            _hook_failed("could not finish process span")
        finally:
            delivery.span.end()
            self._restore_context(delivery)
            if message.failed:
                setattr(message, _NACK_ATTR, delivery.span)

    @staticmethod
    def _restore_context(delivery: Delivery) -> None:
        try:
            if delivery.delivery_token is not None:
                _current_delivery.reset(delivery.delivery_token)
        except ValueError:
            _current_delivery.set(None)
        try:
            otel_context.detach(delivery.token)
        except Exception:
            _hook_failed("could not detach context")

    def before_nack(self, broker: Broker, message: MessageProxy) -> None:
        """Record the move to the dead-letter queue as a ``nack <queue>`` settle span.

        A message for an unknown actor never reaches the process hooks, so its process span is made here.
        """
        try:
            parent = message.__dict__.pop(_NACK_ATTR, None)
            if parent is None and isinstance(message._exception, ActorNotFound):
                parent = self._unknown_actor_span(broker, message)
            context = trace.set_span_in_context(parent) if parent is not None else otel_context.Context()
            attributes = dict(broker_attributes(broker, message.queue_name, "nack"))
            attributes[semconv.MESSAGING_MESSAGE_ID] = message.message_id
            attributes[semconv.DEAD_LETTER_QUEUE] = xq_name(message.queue_name)
            span = self.tracer.start_span(
                semconv.span_name("nack", message.queue_name),
                context=context,
                kind=SpanKind.CLIENT,
                attributes=attributes,
            )
            setattr(message, _NACK_ATTR, span)
        except Exception:
            _hook_failed("could not start nack span")

    def after_nack(self, broker: Broker, message: MessageProxy) -> None:
        span: trace.Span | None = message.__dict__.pop(_NACK_ATTR, None)
        if span is not None:
            span.end()

    def _unknown_actor_span(self, broker: Broker, message: MessageProxy) -> trace.Span:
        delivery = start_delivery(self, broker, message, links=self.parent_policy == "link")
        exc = message._exception
        assert exc is not None
        try:
            delivery.span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
            delivery.span.set_attribute(semconv.ERROR_TYPE, qualified_name(exc))
            finish_delivery(broker, message, delivery, exception=None, skipped=False, reason="actor_not_found")
        finally:
            delivery.span.end()
            self._restore_context(delivery)
        return delivery.span

    # -- process lifecycle -----------------------------------------------------------------------

    def after_worker_shutdown(self, broker: Broker, worker: dramatiq.Worker) -> None:
        """Flush spans and logs: forked worker processes leave through ``os._exit``, so atexit never runs."""
        self.flush()

    def flush(self, timeout_millis: int = 30_000) -> None:
        """Force-flush the tracer provider, then the global logger provider, if they can be. Never raises."""
        force_flush(self._tracer_provider or trace.get_tracer_provider(), timeout_millis, _stdlib_log, "spans")
        # Last, so the records logged while the spans were flushed leave too.
        force_flush(get_logger_provider(), timeout_millis, _stdlib_log, "log records")

    def links_for(self, remote: trace.SpanContext) -> list[Link]:
        """The links a process span gets under the ``link`` policy."""
        return [Link(remote)] if remote.is_valid else []
