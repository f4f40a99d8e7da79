"""Dead-letter queue logic behind ``tracedq dlq`` (no click, no rich): read, replay and purge ``<queue>.XQ``.

Reading never removes anything: messages are fetched with ``basic_get`` and manual ack, and every one we
did not deliberately settle is nacked back (``requeue=True``) before the connection closes. If the process
dies first, RabbitMQ returns the unacked messages to the XQ by itself when the connection drops.

Replay publishes each selected message to its queue with publisher confirms and acks the XQ copy only
after RabbitMQ confirmed the new one. A crash between the two leaves the message in both places (the
actors are idempotent), never in neither.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions
from dramatiq.common import q_name, xq_name
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind

from observability import semconv
from observability.propagation import CARRIER_KEY, extract_context, inject_context, read_carrier

__all__ = [
    "REPLAYED_FROM_KEY",
    "UNDECODABLE",
    "DeadLetter",
    "DeadLetterQueue",
    "QueueNotFound",
    "ReplayOutcome",
    "ReplayReport",
    "ReplayResult",
    "base_queue",
    "depth",
    "find_prefix",
    "jaeger_link",
    "no_progress",
    "prepare_replay",
    "publish",
    "purge",
    "read",
    "replay",
    "selector",
]

#: Message option recording the trace id of the trace the replayed message died in.
REPLAYED_FROM_KEY = "replayed_from_trace"
UNDECODABLE = "undecodable"
_tracer = trace.get_tracer("operations.dead_letters")


class QueueNotFound(Exception):
    """The dead-letter queue does not exist on the broker."""


def base_queue(queue: str) -> str:
    """``orders``, ``orders.DQ`` and ``orders.XQ`` all name the queue ``orders``."""
    return queue[: -len(".XQ")] if queue.endswith(".XQ") else q_name(queue)


def jaeger_link(jaeger_url: str, trace_id: str) -> str:
    """The Jaeger UI page of a trace."""
    return f"{jaeger_url.rstrip('/')}/trace/{trace_id}"


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
        # actors.dead_lettering names the headers. Imported here, not at module level: importing ``actors`` builds
        # the broker and sets up the process's tracing, which ``tracedq demo`` must do its own way.
        from actors import dead_lettering

        value = self.headers.get(getattr(dead_lettering, name))
        return value.decode(errors="replace") if isinstance(value, bytes) else value

    @property
    def dead_letter_reason(self) -> str | None:
        """The worker's ``tracedq-dead-letter-reason`` (actors/dead_lettering.py); None on older dead letters."""
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


class DeadLetterQueue:
    """A connection to ``<queue>.XQ`` that holds fetched messages unacked until :meth:`close`.

    Use as a context manager: on exit every still-unsettled message goes back to the XQ.
    """

    def __init__(self, broker_url: str, queue: str) -> None:
        self.queue = base_queue(queue)
        self.xq = xq_name(self.queue)
        self.connection = pika.BlockingConnection(pika.URLParameters(broker_url))
        self.channel = self.connection.channel()
        self._unsettled: dict[int, DeadLetter] = {}
        try:
            self.depth = self.channel.queue_declare(self.xq, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as exc:
            self.connection.close()
            raise QueueNotFound(f"queue {self.xq!r} does not exist") from exc

    def __enter__(self) -> DeadLetterQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def fetch(self, limit: int | None = None) -> list[DeadLetter]:
        """Fetch up to ``limit`` messages (all, when ``None``) without removing them."""
        letters: list[DeadLetter] = []
        while limit is None or len(letters) < limit:
            method, properties, body = self.channel.basic_get(self.xq, auto_ack=False)
            if method is None:
                break
            letter = DeadLetter.from_delivery(method.delivery_tag, properties, body)
            self._unsettled[letter.delivery_tag] = letter
            letters.append(letter)
        return letters

    def ack(self, letter: DeadLetter) -> None:
        """Remove ``letter`` from the XQ for good."""
        self.channel.basic_ack(letter.delivery_tag)
        self._unsettled.pop(letter.delivery_tag, None)

    def release(self, letter: DeadLetter) -> None:
        """Put ``letter`` back in the XQ."""
        self.channel.basic_nack(letter.delivery_tag, requeue=True)
        self._unsettled.pop(letter.delivery_tag, None)

    def close(self) -> None:
        """Nack every unsettled message back, then close. A dead channel returns them by itself."""
        try:
            if self.channel.is_open:
                for letter in list(self._unsettled.values()):
                    self.release(letter)
        finally:
            self._unsettled.clear()
            if self.connection.is_open:
                self.connection.close()


def read(broker_url: str, queue: str, limit: int | None) -> list[DeadLetter]:
    """Up to ``limit`` messages of ``<queue>.XQ``, left in place."""
    with DeadLetterQueue(broker_url, queue) as dlq:
        return dlq.fetch(limit)


def find_prefix(broker_url: str, queue: str, prefix: str, limit: int | None) -> list[DeadLetter]:
    """The dead letters whose id starts with ``prefix`` among the first ``limit``, left in place.

    An id equal to ``prefix`` is the only match, even if longer ids start with it.
    """
    with DeadLetterQueue(broker_url, queue) as dlq:
        matches = [letter for letter in dlq.fetch(limit) if (letter.message_id or "").startswith(prefix)]
    exact = [letter for letter in matches if letter.message_id == prefix]
    return exact or matches


def depth(broker_url: str, queue: str) -> int:
    """How many messages ``<queue>.XQ`` holds now."""
    with DeadLetterQueue(broker_url, queue) as dlq:
        return int(dlq.depth)


def purge(broker_url: str, queue: str) -> int:
    """Delete every message in ``<queue>.XQ``; returns how many there were."""
    with DeadLetterQueue(broker_url, queue) as dlq:
        return int(dlq.channel.queue_purge(dlq.xq).method.message_count)


# -- replay -------------------------------------------------------------------------------------------


def publish(channel: Any, routing_key: str, body: bytes) -> None:
    """Publish ``body`` persistently to ``routing_key`` over the default exchange; returns once confirmed.

    The channel is in confirm mode and ``mandatory`` is set, so a nack or an unroutable message (the
    queue is gone) raises instead of vanishing.
    """
    channel.basic_publish(
        exchange="",
        routing_key=routing_key,
        body=body,
        properties=pika.BasicProperties(delivery_mode=2, content_type="application/json"),
        mandatory=True,
    )


def prepare_replay(letter: DeadLetter, queue: str) -> tuple[str, dict[str, Any], trace.Span]:
    """The target queue, the rewritten message and the (started, unended) ``replay <queue>`` span.

    Retries start over (``retries=0``, no ``traceback``/``requeue_timestamp``), a delayed message's
    ``eta`` is dropped and the carrier replaced (queue wait counts from the replay), and
    the message gets a new trace whose root span links to the one it died in.
    """
    assert letter.message is not None
    message = json.loads(json.dumps(letter.message))  # a deep copy
    target = q_name(letter.queue_name or queue)
    message["queue_name"] = target
    options = message.get("options")
    if not isinstance(options, dict):
        options = message["options"] = {}
    options["retries"] = 0
    for key in ("traceback", "requeue_timestamp", "eta"):
        options.pop(key, None)
    original = letter.span_context
    attributes: dict[str, Any] = {
        semconv.MESSAGING_SYSTEM: "rabbitmq",
        semconv.MESSAGING_OPERATION_TYPE: "send",
        semconv.MESSAGING_OPERATION_NAME: "replay",
        semconv.MESSAGING_DESTINATION_NAME: target,
        semconv.MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY: target,
        semconv.DEAD_LETTER_QUEUE: xq_name(queue),
    }
    if letter.message_id is not None:
        attributes[semconv.MESSAGING_MESSAGE_ID] = letter.message_id
    if letter.actor_name is not None:
        attributes[semconv.ACTOR_NAME] = letter.actor_name
    if original is not None:
        attributes[semconv.REPLAYED_FROM_TRACE] = format(original.trace_id, "032x")
        options[REPLAYED_FROM_KEY] = format(original.trace_id, "032x")
    else:
        options.pop(REPLAYED_FROM_KEY, None)
    span = _tracer.start_span(
        semconv.span_name("replay", target),
        context=otel_context.Context(),  # a new root: the old trace is over
        kind=SpanKind.PRODUCER,
        attributes=attributes,
        links=[Link(original, {semconv.LINK_KIND: "replayed_from"})] if original is not None else None,
    )
    options.pop(CARRIER_KEY, None)
    inject_context(options, trace.set_span_in_context(span))
    return target, message, span


class ReplayOutcome:
    REPLAYED = "replayed"
    WOULD_REPLAY = "would replay"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class ReplayResult:
    letter: DeadLetter
    outcome: str
    detail: str = ""
    new_trace_id: str | None = None


@dataclass
class ReplayReport:
    fetched: int = 0
    results: list[ReplayResult] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for result in self.results if result.outcome == outcome)

    @property
    def failed(self) -> bool:
        return self.count(ReplayOutcome.FAILED) > 0


Selector = Callable[[DeadLetter], bool]


def selector(ids: Sequence[str] = (), actor: str | None = None, everything: bool = False) -> Selector:
    """Select by message id (any of ``ids``), by actor, or everything; criteria given together must all hold."""
    wanted = set(ids)

    def select(letter: DeadLetter) -> bool:
        if wanted and letter.message_id not in wanted:
            return False
        if actor is not None and letter.actor_name != actor:
            return False
        return everything or bool(wanted) or actor is not None

    return select


@contextmanager
def no_progress(total: int) -> Iterator[Callable[[], None]]:
    """A ``progress`` for :func:`replay` that shows nothing."""
    yield lambda: None


def replay(
    broker_url: str,
    queue: str,
    select: Selector,
    *,
    limit: int | None = None,
    dry_run: bool = False,
    progress: Callable[[int], Any] = no_progress,
) -> ReplayReport:
    """Republish the selected messages of ``<queue>.XQ`` to their queues, each in a new linked trace.

    Args:
        broker_url: the RabbitMQ URL.
        queue: the queue whose XQ to read (``orders`` or ``orders.XQ``).
        select: which fetched messages to replay; the others go back to the XQ untouched.
        limit: fetch at most this many messages from the XQ (all when ``None``).
        dry_run: report what would be replayed; publish nothing, remove nothing.
        progress: a context manager factory taking the number selected and yielding an ``advance()``.

    Returns:
        What happened to each selected message. Exceptions other than a per-message publish failure
        (nack, unroutable) propagate; the unacked messages then stay in (or return to) the XQ.
    """
    report = ReplayReport()
    with DeadLetterQueue(broker_url, queue) as dlq:
        letters = dlq.fetch(limit)
        report.fetched = len(letters)
        chosen = [letter for letter in letters if select(letter)]
        chosen_tags = {letter.delivery_tag for letter in chosen}
        for letter in letters:
            if letter.delivery_tag not in chosen_tags:
                dlq.release(letter)
        if not dry_run and chosen:
            dlq.channel.confirm_delivery()
        with progress(len(chosen)) as advance:
            for letter in chosen:
                report.results.append(_replay_one(dlq, letter, dry_run))
                advance()
    return report


def _replay_one(dlq: DeadLetterQueue, letter: DeadLetter, dry_run: bool) -> ReplayResult:
    if letter.message is None:
        dlq.release(letter)
        return ReplayResult(letter, ReplayOutcome.SKIPPED, "undecodable body: left in the XQ")
    if dry_run:
        dlq.release(letter)
        return ReplayResult(letter, ReplayOutcome.WOULD_REPLAY, q_name(letter.queue_name or dlq.queue))
    target, message, span = prepare_replay(letter, dlq.queue)
    new_trace_id = format(span.get_span_context().trace_id, "032x")
    try:
        try:
            publish(dlq.channel, target, json.dumps(message, separators=(",", ":")).encode())
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
            dlq.release(letter)
            detail = f"queue {target!r} does not exist" if isinstance(exc, pika.exceptions.UnroutableError) else ""
            return ReplayResult(letter, ReplayOutcome.FAILED, detail or f"broker refused: {exc!r}")
        dlq.ack(letter)  # only now: the new copy is confirmed
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
        raise
    finally:
        span.end()
    return ReplayResult(letter, ReplayOutcome.REPLAYED, target, new_trace_id)
