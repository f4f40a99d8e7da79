"""One delivery of a message to a worker: its process span, its attributes and its outcome.

Split from the middleware so the hooks stay a thin shell: this module decides what a span says
(messaging semantic-convention keys plus our ``dramatiq.*`` keys) and how an attempt ended (success,
retrying, dead-lettered, skipped), following Dramatiq's own rules for ``Retry`` and ``throws``.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Final

from dramatiq.broker import Broker, MessageProxy
from dramatiq.common import xq_name
from dramatiq.errors import Retry
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Link, SpanKind, Tracer

from observability import semconv
from observability.broker_facts import broker_attributes, resolve_max_retries
from observability.delivery_outcome import dead_letter_reason, is_thrown, queue_wait_ms
from observability.dramatiq_internals import delivery_tag, inner_message, proxy_exception, redelivered
from observability.exception_events import record_exception
from observability.personal_data import described
from observability.propagation import extract_context, read_carrier

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

__all__ = ["Delivery", "current_delivery", "finish_delivery", "qualified_name", "start_delivery"]

_MAX_ARGS_CHARS: Final = 1024


class Delivery:
    """The state one worker thread keeps between ``before_`` and ``after_process_message``."""

    __slots__ = (
        "capture",
        "delivery_token",
        "message_id",
        "retry_delay_ms",
        "retry_enqueue_failed",
        "span",
        "token",
    )

    def __init__(
        self, span: trace.Span, token: Token[otel_context.Context], message_id: str, *, capture: bool = False
    ) -> None:
        self.span = span
        self.capture = capture  # personal data (arguments, exception texts) may go on the span and log lines
        self.token = token
        self.message_id = message_id
        self.delivery_token: Token[Delivery | None] | None = None
        self.retry_delay_ms: int | None = None
        self.retry_enqueue_failed = False


# Process hooks of one delivery run on one worker thread, so the delivery travels in a context var; the send
# spans of the retries it enqueues find it there too.
current_delivery: ContextVar[Delivery | None] = ContextVar("tracing_current_delivery", default=None)


def start_delivery(
    tracer: Tracer,
    propagator: TextMapPropagator | None,
    broker: Broker,
    message: MessageProxy,
    *,
    links: bool,
    capture_args: bool,
) -> Delivery:
    """Open the ``process <queue>`` span for ``message`` and make it current, with the carrier's baggage.

    Under ``links`` the span starts a new trace linked to the delivering send (the parent is dropped, the
    baggage kept); otherwise the send is its parent.
    """
    # This runs once per message on the worker's hot path. Read the proxy's fields once: each access
    # through ``MessageProxy.__getattr__`` costs a Python call, and a missing one an AttributeError.
    inner = inner_message(message)
    options = inner.options
    queue_name = inner.queue_name
    carrier, invalid = read_carrier(options)
    parent = extract_context(carrier, propagator) if carrier else otel_context.Context()
    attributes = dict(broker_attributes(broker, queue_name, "process"))
    attributes[semconv.MESSAGING_MESSAGE_ID] = inner.message_id
    attributes[semconv.ACTOR_NAME] = inner.actor_name
    attributes[semconv.RETRIES] = _int_option(options, "retries")
    max_retries = resolve_max_retries(broker, inner.actor_name, options)
    if max_retries is not None:
        attributes[semconv.MAX_RETRIES] = max_retries
    attributes[semconv.QUEUE_WAIT_MS] = queue_wait_ms(inner.message_timestamp, options)
    was_redelivered = redelivered(message)
    if was_redelivered is not None:
        attributes[semconv.REDELIVERED] = was_redelivered
    tag = delivery_tag(message)
    if tag is not None:
        attributes[semconv.MESSAGING_RABBITMQ_MESSAGE_DELIVERY_TAG] = tag
    if invalid:
        attributes[semconv.TRACE_CONTEXT_INVALID] = True
    if capture_args:
        attributes[semconv.ARGS] = repr(inner.args)[:_MAX_ARGS_CHARS]
        attributes[semconv.KWARGS] = repr(inner.kwargs)[:_MAX_ARGS_CHARS]

    span_parent = parent
    span_links = None
    if links:
        # A new trace per delivery, linked to the send: the parent is dropped, the baggage kept.
        remote = trace.get_current_span(parent).get_span_context()
        span_links = [Link(remote)] if remote.is_valid else []
        span_parent = trace.set_span_in_context(trace.INVALID_SPAN, parent)
    span = tracer.start_span(
        semconv.span_name("process", queue_name),
        context=span_parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        links=span_links,
    )
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    return Delivery(span, token, inner.message_id, capture=capture_args)


def finish_delivery(
    broker: Broker,
    message: MessageProxy,
    delivery: Delivery,
    *,
    exception: BaseException | None,
    skipped: bool,
    reason: str | None = None,
) -> None:
    """Record how this attempt ended on the span, and log the outcomes an operator must see."""
    span = delivery.span
    if not span.is_recording():
        return
    if exception is None and not skipped and not message.failed and not delivery.retry_enqueue_failed:
        span.set_attribute(semconv.OUTCOME, "success")  # the hot path: nothing else to say
        return
    log = _outcome_log()
    expected = exception is not None and (isinstance(exception, Retry) or is_thrown(broker, message, exception))
    if exception is not None and not expected:
        record_exception(span, exception, capture=delivery.capture)
        span.set_status(trace.Status(trace.StatusCode.ERROR, described(exception, capture=delivery.capture)))
        span.set_attribute(semconv.ERROR_TYPE, qualified_name(exception))
    fields: dict[str, Any] = {
        "message_id": message.message_id,
        "actor": message.actor_name,
        "queue": message.queue_name,
    }
    if skipped:
        skip_reason = _skip_reason(message)
        span.set_attribute(semconv.SKIPPED, True)
        span.set_attribute(semconv.SKIP_REASON, skip_reason)
        log.warning("message_skipped", reason=skip_reason, **fields)
    if delivery.retry_enqueue_failed:
        span.set_status(trace.Status(trace.StatusCode.ERROR, "retry enqueue failed: message lost"))
        span.set_attribute(semconv.OUTCOME, "lost")
        log.error("retry_enqueue_failed", **fields)
    elif message.failed:
        if reason is None:
            thrown = exception is not None and expected and not isinstance(exception, Retry)
            reason = dead_letter_reason(exception, skipped=skipped, thrown=thrown)
        span.set_attribute(semconv.OUTCOME, "dead_lettered")
        span.set_attribute(semconv.DEAD_LETTERED, True)
        span.set_attribute(semconv.DEAD_LETTER_REASON, reason)
        span.set_attribute(semconv.DEAD_LETTER_QUEUE, xq_name(message.queue_name))
        failure = proxy_exception(message)
        if failure is not None:
            # The why, for operators and the DLQ tools: "InvalidPayload: PlaceOrder: lines: ...".
            error_text = described(failure, capture=delivery.capture)
            span.set_attribute(semconv.DEAD_LETTER_ERROR, error_text[:_MAX_ARGS_CHARS])
        log.warning(
            "message_dead_lettered",
            reason=reason,
            dead_letter_queue=xq_name(message.queue_name),
            error=None if failure is None else described(failure, capture=delivery.capture),
            **fields,
        )
    elif skipped:
        span.set_attribute(semconv.OUTCOME, "skipped")
    else:  # an exception that Retries re-enqueued
        span.set_attribute(semconv.OUTCOME, "retrying")
        if delivery.retry_delay_ms is not None:
            span.set_attribute(semconv.RETRY_DELAY_MS, delivery.retry_delay_ms)


_outcome_logger: FilteringBoundLogger | None = None


def _outcome_log() -> FilteringBoundLogger:
    """The structlog logger for skips and dead letters, imported on the first one (see log_context.py)."""
    global _outcome_logger
    if _outcome_logger is None:
        import structlog

        _outcome_logger = structlog.get_logger("observability.tracing")
    return _outcome_logger


def _skip_reason(message: MessageProxy) -> str:
    failure = proxy_exception(message)
    if failure is not None:
        return str(failure)
    # periodiq's middleware raises a bare SkipMessage for a tick older than its skip_delay; the tick's
    # ``scheduled_at`` option is what tells it apart from any other silent skip.
    scheduled_at = message.options.get("scheduled_at")
    if scheduled_at is not None:
        return f"stale periodic tick (scheduled_at={scheduled_at})"
    return "skipped by middleware"


def qualified_name(exc: BaseException) -> str:
    """A low-cardinality ``error.type``: the exception's fully qualified class name."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _int_option(options: Mapping[str, Any], key: str) -> int:
    value = options.get(key, 0)
    return value if isinstance(value, int) else 0
