"""One delivery of a message to a worker: its process span, its attributes and its outcome.

Split from the middleware so the hooks stay a thin shell: this module decides what a span says
(messaging semantic-convention keys plus our ``dramatiq.*`` keys) and how an attempt ended (success,
retrying, dead-lettered, skipped), following Dramatiq's own rules for ``Retry`` and ``throws``.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import Token
from typing import TYPE_CHECKING, Any, Final

from dramatiq.broker import Broker, MessageProxy
from dramatiq.common import xq_name
from dramatiq.errors import Retry
from dramatiq.middleware import Retries
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from observability import semconv
from observability.outcomes import dead_letter_reason, is_thrown, queue_wait_ms
from observability.propagation import extract_context, read_carrier

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from observability.middleware import Tracing

__all__ = ["Delivery", "broker_attributes", "finish_delivery", "qualified_name", "start_delivery"]

_MAX_ARGS_CHARS: Final = 1024
_CACHE_ATTR: Final = "_tracing_attribute_cache"
_RETRIES_ATTR: Final = "_tracing_retries_default"


class Delivery:
    """The state one worker thread keeps between ``before_`` and ``after_process_message``."""

    __slots__ = ("delivery_token", "message_id", "retry_delay_ms", "retry_enqueue_failed", "span", "token")

    def __init__(self, span: trace.Span, token: Token[otel_context.Context], message_id: str) -> None:
        self.span = span
        self.token = token
        self.message_id = message_id
        self.delivery_token: Token[Delivery | None] | None = None
        self.retry_delay_ms: int | None = None
        self.retry_enqueue_failed = False


def messaging_system(broker: Broker) -> str:
    """The ``messaging.system`` value: the real broker, as the conventions ask, never "dramatiq"."""
    # By the Dramatiq class in the MRO, so subclasses (ours adds queue arguments) keep the right system.
    names = {cls.__name__ for cls in type(broker).__mro__}
    if "RabbitmqBroker" in names:
        return "rabbitmq"
    if "RedisBroker" in names:
        return "redis"
    return "dramatiq"


def broker_attributes(broker: Broker, queue: str, operation: str) -> Mapping[str, AttributeValue]:
    """The attributes that depend only on broker, queue and operation, computed once and cached.

    These are the sampling-relevant ones, so they are passed at span start.
    """
    # Cached on the broker itself: an id()-keyed global could hand a new broker a dead one's attributes.
    cache: dict[tuple[str, str], Mapping[str, AttributeValue]] = broker.__dict__.setdefault(_CACHE_ATTR, {})
    key = (queue, operation)
    cached = cache.get(key)
    if cached is not None:
        return cached
    system = messaging_system(broker)
    operation_type = {"send": "send", "process": "process", "nack": "settle"}[operation]
    attributes: dict[str, AttributeValue] = {
        semconv.MESSAGING_SYSTEM: system,
        semconv.MESSAGING_OPERATION_TYPE: operation_type,
        semconv.MESSAGING_OPERATION_NAME: operation,
        semconv.MESSAGING_DESTINATION_NAME: queue,
    }
    if system == "rabbitmq":
        attributes[semconv.MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY] = queue
    attributes.update(_server_attributes(broker, system))
    cache[key] = attributes
    return attributes


def _server_attributes(broker: Broker, system: str) -> dict[str, AttributeValue]:
    """``server.address``/``server.port`` of the broker's server, when its configuration names one."""
    if system == "rabbitmq":
        # RabbitmqBroker keeps one URLParameters (url=...) or a list of ConnectionParameters.
        parameters = getattr(broker, "parameters", None)
        first = parameters[0] if isinstance(parameters, list) and parameters else parameters
        host, port = getattr(first, "host", None), getattr(first, "port", None)
        if host is not None and port is not None:
            return {semconv.SERVER_ADDRESS: str(host), semconv.SERVER_PORT: int(port)}
    elif system == "redis":
        # RedisBroker's client (url=..., host=... or client=...) keeps its settings on the pool, as
        # contrib's redis instrumentation reads them. A Unix socket is named by ``server.address`` alone;
        # a Sentinel pool names no host until it connects, so it gets nothing rather than a guess.
        pool = getattr(getattr(broker, "client", None), "connection_pool", None)
        kwargs = getattr(pool, "connection_kwargs", None)
        if isinstance(kwargs, Mapping):
            path, host = kwargs.get("path"), kwargs.get("host")
            if isinstance(path, str) and path:
                return {semconv.SERVER_ADDRESS: path}
            if isinstance(host, str) and host:
                port = kwargs.get("port")
                # redis-py's Connection defaults to 6379 when a URL names no port.
                return {semconv.SERVER_ADDRESS: host, semconv.SERVER_PORT: int(port) if port else 6379}
    return {}


def start_delivery(tracing: Tracing, broker: Broker, message: MessageProxy, *, links: bool) -> Delivery:
    """Open the ``process <queue>`` span for ``message`` and make it current, with the carrier's baggage."""
    # This runs once per message on the worker's hot path. Read the proxy's fields once: each access
    # through ``MessageProxy.__getattr__`` costs a Python call, and a missing one an AttributeError.
    own = message.__dict__
    inner = own.get("_message", message)
    options = inner.options
    queue_name = inner.queue_name
    carrier, invalid = read_carrier(options)
    parent = extract_context(carrier, tracing.propagator) if carrier else otel_context.Context()
    attributes = dict(broker_attributes(broker, queue_name, "process"))
    attributes[semconv.MESSAGING_MESSAGE_ID] = inner.message_id
    attributes[semconv.ACTOR_NAME] = inner.actor_name
    attributes[semconv.RETRIES] = _int_option(options, "retries")
    max_retries = resolve_max_retries(broker, inner.actor_name, options)
    if max_retries is not None:
        attributes[semconv.MAX_RETRIES] = max_retries
    attributes[semconv.QUEUE_WAIT_MS] = queue_wait_ms(inner.message_timestamp, options)
    redelivered = own.get("redelivered")  # RabbitMQ's proxy only
    if redelivered is not None:
        attributes[semconv.REDELIVERED] = bool(redelivered)
    tag = own.get("_tag")
    if isinstance(tag, int):
        attributes[semconv.MESSAGING_RABBITMQ_MESSAGE_DELIVERY_TAG] = tag
    if invalid:
        attributes[semconv.TRACE_CONTEXT_INVALID] = True
    if tracing.capture_args:
        attributes[semconv.ARGS] = repr(inner.args)[:_MAX_ARGS_CHARS]
        attributes[semconv.KWARGS] = repr(inner.kwargs)[:_MAX_ARGS_CHARS]

    span_parent = parent
    span_links = None
    if links:
        # A new trace per delivery, linked to the send: the parent is dropped, the baggage kept.
        span_links = tracing.links_for(trace.get_current_span(parent).get_span_context())
        span_parent = trace.set_span_in_context(trace.INVALID_SPAN, parent)
    span = tracing.tracer.start_span(
        semconv.span_name("process", queue_name),
        context=span_parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        links=span_links,
    )
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    return Delivery(span, token, inner.message_id)


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
        span.record_exception(exception)
        span.set_status(trace.Status(trace.StatusCode.ERROR, str(exception)))
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
        if message._exception is not None:
            # The why, for operators and the DLQ tools: "InvalidPayload: PlaceOrder: lines: ...".
            error_text = f"{type(message._exception).__name__}: {message._exception}"
            span.set_attribute(semconv.DEAD_LETTER_ERROR, error_text[:_MAX_ARGS_CHARS])
        log.warning(
            "message_dead_lettered",
            reason=reason,
            dead_letter_queue=xq_name(message.queue_name),
            error=None if message._exception is None else repr(message._exception),
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
    if message._exception is not None:
        return str(message._exception)
    # periodiq's middleware raises a bare SkipMessage for a tick older than its skip_delay; the tick's
    # ``scheduled_at`` option is what tells it apart from any other silent skip.
    scheduled_at = message.options.get("scheduled_at")
    if scheduled_at is not None:
        return f"stale periodic tick (scheduled_at={scheduled_at})"
    return "skipped by middleware"


def resolve_max_retries(broker: Broker, actor_name: str, options: Mapping[str, Any]) -> int | None:
    """``max_retries`` as Dramatiq's ``Retries`` resolves it: message option, actor option, middleware default."""
    value = options.get("max_retries")
    if value is None:
        actor = broker.actors.get(actor_name)
        if actor is not None:
            value = actor.options.get("max_retries")
    if value is None:
        value = _retries_default(broker)
    return value if isinstance(value, int) else None


def _retries_default(broker: Broker) -> int | None:
    cached: int | None = broker.__dict__.get(_RETRIES_ATTR, -1)
    if cached == -1:
        retries = next((m for m in broker.middleware if isinstance(m, Retries)), None)
        cached = retries.max_retries if retries is not None else None
        broker.__dict__[_RETRIES_ATTR] = cached
    return cached


def qualified_name(exc: BaseException) -> str:
    """A low-cardinality ``error.type``: the exception's fully qualified class name."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _int_option(options: Mapping[str, Any], key: str) -> int:
    value = options.get(key, 0)
    return value if isinstance(value, int) else 0
