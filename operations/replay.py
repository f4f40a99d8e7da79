"""Replaying dead letters: each selected message of ``<queue>.XQ`` back to its queue, in a new, linked trace.

Replay publishes each selected message to its queue with publisher confirms and acks the XQ copy only
after RabbitMQ confirmed the new one. A crash between the two leaves the message in both places (the
actors are idempotent), never in neither.
"""

from __future__ import annotations

import json
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
from observability.propagation import CARRIER_KEY, inject_context
from operations.dead_letter import DeadLetter
from operations.dead_letter_queue import DeadLetterQueue

__all__ = [
    "REPLAYED_FROM_KEY",
    "ReplayOutcome",
    "ReplayReport",
    "ReplayResult",
    "Selector",
    "no_progress",
    "prepare_replay",
    "publish",
    "replay",
    "selector",
]

#: Message option recording the trace id of the trace the replayed message died in.
REPLAYED_FROM_KEY = "replayed_from_trace"
_tracer = trace.get_tracer("operations.replay")


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
