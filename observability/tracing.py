"""The ``Tracing`` middleware: one trace per message, end to end, through every Dramatiq hop.

It must sit first in the middleware list (:func:`observability.install` puts it there). Dramatiq runs
``after_*`` hooks in reverse order, so a process span opened first closes last and stays current while
``Retries``, ``Pipelines``, ``Callbacks`` and ``GroupCallbacks`` enqueue follow-up messages and while the
worker logs "Failed to process message": all of those then land in the same trace.

This module holds the consumer side: the process span of each delivery (``observability/process_spans.py``
decides what it says) and the ``nack`` span of a move to the dead-letter queue. The send spans, around the
broker's own ``enqueue``, come from its base class (``observability/send_spans.py``).

Every hook swallows its own errors (a tracing bug must never lose a message) and every context attached
for a message is detached in the matching after hook, so nothing leaks to the next message on a thread.
"""

from __future__ import annotations

import logging
from typing import Literal

import dramatiq
from dramatiq.broker import Broker, MessageProxy
from dramatiq.common import xq_name
from dramatiq.errors import ActorNotFound
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, Tracer, TracerProvider

from observability import semconv
from observability.broker_facts import broker_attributes
from observability.delivery_end import DeliveryEndMiddleware
from observability.dramatiq_internals import proxy_exception
from observability.failure_reporting import failure_reporter
from observability.flushing import flush_telemetry
from observability.message_state import MessageState
from observability.personal_data import described
from observability.process_spans import Delivery, current_delivery, finish_delivery, qualified_name, start_delivery
from observability.publish_watchers import unwatch_publishes, watch_publishes, watchers_of
from observability.send_spans import SendSpans

__all__ = ["ParentPolicy", "Tracing"]

ParentPolicy = Literal["parent", "link"]

_stdlib_log = logging.getLogger(__name__)
_hook_failed = failure_reporter(_stdlib_log, "tracing")


class Tracing(SendSpans, DeliveryEndMiddleware):
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
        super().__init__()
        # The process span of a failed delivery, from the worker thread to the consumer thread's nack.
        self._failed: MessageState[trace.Span] = MessageState()
        self._nacks: MessageState[trace.Span] = MessageState()

    @property
    def tracer(self) -> Tracer:
        """The tracer, created on first use so a provider configured after import is honoured."""
        if self._tracer is None:
            provider = self._tracer_provider or trace.get_tracer_provider()
            self._tracer = provider.get_tracer("observability.dramatiq", schema_url=semconv.SCHEMA_URL)
        return self._tracer

    # -- watching publishes ----------------------------------------------------------------------

    def instrument(self, broker: Broker) -> None:
        """Give every publish through ``broker`` one send span. Idempotent.

        Another ``Tracing`` that watched this broker (an earlier ``install``, or the instrumentor's before
        the app installed its own) stops, so each publish still gets one send span, from this one.
        """
        for other in watchers_of(broker):
            if isinstance(other, Tracing) and other is not self:
                unwatch_publishes(broker, other)
        watch_publishes(broker, self)

    # -- consumer side ---------------------------------------------------------------------------

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        try:
            delivery = self._start_delivery(broker, message)
            delivery.delivery_token = current_delivery.set(delivery)
        except Exception:
            _hook_failed("could not start process span")

    def _start_delivery(self, broker: Broker, message: MessageProxy) -> Delivery:
        return start_delivery(
            self.tracer,
            self.propagator,
            broker,
            message,
            links=self.parent_policy == "link",
            capture_args=self.capture_args,
        )

    def end_delivery(
        self, broker: Broker, message: MessageProxy, *, exception: BaseException | None, skipped: bool
    ) -> None:
        delivery = current_delivery.get()
        if delivery is None:  # our before hook failed; or this delivery ended and _restore_context cleared it
            return
        try:
            finish_delivery(broker, message, delivery, exception=exception, skipped=skipped)
        except Exception:
            _hook_failed("could not finish process span")
        finally:
            delivery.span.end()
            self._restore_context(delivery)
            if message.failed:
                self._failed.put(message, delivery.span)

    @staticmethod
    def _restore_context(delivery: Delivery) -> None:
        try:
            if delivery.delivery_token is not None:
                current_delivery.reset(delivery.delivery_token)
        except ValueError:
            current_delivery.set(None)
        try:
            otel_context.detach(delivery.token)
        except Exception:
            _hook_failed("could not detach context")

    def before_nack(self, broker: Broker, message: MessageProxy) -> None:
        """Record the move to the dead-letter queue as a ``nack <queue>`` settle span.

        A message for an unknown actor never reaches the process hooks, so its process span is made here.
        """
        try:
            parent = self._failed.take(message)
            if parent is None and isinstance(proxy_exception(message), ActorNotFound):
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
            self._nacks.put(message, span)
        except Exception:
            _hook_failed("could not start nack span")

    def after_nack(self, broker: Broker, message: MessageProxy) -> None:
        span = self._nacks.take(message)
        if span is not None:
            span.end()

    def _unknown_actor_span(self, broker: Broker, message: MessageProxy) -> trace.Span:
        delivery = self._start_delivery(broker, message)
        exc = proxy_exception(message)
        assert exc is not None
        try:
            delivery.span.set_status(trace.Status(trace.StatusCode.ERROR, described(exc, capture=self.capture_args)))
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
        """Force-flush the tracer provider, then the global logger provider, within ``timeout_millis``. Never raises."""
        flush_telemetry(timeout_millis, metrics=False, tracer_provider=self._tracer_provider)
