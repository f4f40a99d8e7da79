"""The ``Metrics`` middleware: OpenTelemetry messaging metrics for Dramatiq, each delivery counted once.

A delivery is counted when the worker settles it (``before_ack``/``before_nack``), not in
``after_process_message``: Dramatiq runs after-hooks in reverse list order, so a middleware appended
after ``Retries`` (``broker.add_middleware``) sees ``after_process_message`` before ``Retries`` has
decided to retry or dead-letter. By the time the message is acked or nacked every middleware has
spoken, so the outcome is right wherever ``Metrics`` sits in the list. Only deliveries this middleware
saw in a process hook, plus messages for unknown actors, are counted; the delay-queue bookkeeping
acks are not.

Publishes are measured around the broker's own ``enqueue`` (the wrapper ``Tracing`` shares,
``observability/publish_watchers.py``), because RabbitMQ's reconnect loop fires ``before_enqueue`` several times per
message and a failed publish never fires ``after_enqueue``. The worker's delay-queue hop (``q.DQ`` -> ``q``)
is not counted as a send, and a retry is counted once, when its attempt settles: Dramatiq's Prometheus
middleware counts both publishes and so reports every retry twice (``/work/shared/reference/anchors.md``
§2.8).

Labels stay low-cardinality (``observability/metric_labels.py``): queue names are canonical (``.DQ``/``.XQ``
stripped), actor names only when the actor is declared, ``error.type`` is an exception class. Never ids,
arguments or free text.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Literal, NamedTuple

import dramatiq
from dramatiq.broker import Broker, MessageProxy
from dramatiq.errors import ActorNotFound, Retry
from dramatiq.message import Message
from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider

from observability import semconv
from observability.delivery_end import DeliveryEndMiddleware
from observability.delivery_outcome import dead_letter_reason, is_thrown, queue_wait_ms
from observability.dramatiq_internals import inner_message, proxy_exception, redelivered
from observability.failure_reporting import failure_reporter
from observability.flushing import flush_telemetry
from observability.instruments import DURATION_BUCKETS, QUEUE_WAIT_BUCKETS, Instruments
from observability.message_state import MessageState
from observability.metric_labels import LabelSets
from observability.process_spans import qualified_name
from observability.publish_watchers import PublishWatchingMiddleware

__all__ = ["DURATION_BUCKETS", "QUEUE_WAIT_BUCKETS", "Metrics", "Outcome"]

Outcome = Literal["success", "retrying", "dead_lettered", "skipped", "lost"]

_stdlib_log = logging.getLogger(__name__)
_hook_failed = failure_reporter(_stdlib_log, "metrics")


class _Attempt:
    """One delivery between its process hooks and its settlement, kept on the message proxy."""

    __slots__ = ("duration", "exception", "retry_failed", "skipped", "started")

    def __init__(self, started: float | None = None) -> None:
        self.started = started  # perf_counter at process start; None once in_flight was decremented
        self.duration: float | None = None
        self.exception: BaseException | None = None
        self.skipped = False
        self.retry_failed = False


class _Publish(NamedTuple):
    broker: Broker
    message: Message[Any]
    delay: int | None
    started: float


class Metrics(PublishWatchingMiddleware, DeliveryEndMiddleware):
    """Emit OpenTelemetry messaging metrics (semantic conventions) plus Dramatiq retry/dead-letter counts.

    Args:
        meter_provider: where metrics go; the global provider (looked up on first use) by default.
    """

    def __init__(self, *, meter_provider: MeterProvider | None = None) -> None:
        self._meter_provider = meter_provider
        self._instruments: Instruments | None = None
        self._lock = threading.Lock()
        # message_id of messages the worker holds in its delay queue, waiting for their hop.
        self._pending_hops: set[str] = set()
        # One delivery from its process hooks (worker thread) to its settlement (consumer thread).
        self._attempts: MessageState[_Attempt] = MessageState()
        # The attribute set of each label combination, built once: a bound method, so a lookup is one call.
        self._labels = LabelSets().labels

    @property
    def instruments(self) -> Instruments:
        """The instruments, created on first use so a provider configured after import is honoured."""
        if self._instruments is None:
            with self._lock:
                if self._instruments is None:
                    provider = self._meter_provider or metrics.get_meter_provider()
                    meter = provider.get_meter("observability.dramatiq", schema_url=semconv.SCHEMA_URL)
                    self._instruments = Instruments(meter)
        return self._instruments

    # -- producer side ---------------------------------------------------------------------------

    def publish_started(self, broker: Broker, message: Message[Any], delay: int | None) -> _Publish:
        return _Publish(broker, message, delay, time.perf_counter())

    def publish_ended(self, state: object, exception: BaseException | None) -> None:
        assert isinstance(state, _Publish)
        self._record_send(state.broker, state.message, state.delay, time.perf_counter() - state.started, exception)

    def _record_send(
        self, broker: Broker, message: Message[Any], delay: int | None, seconds: float, exc: BaseException | None
    ) -> None:
        try:
            if delay is None and message.message_id in self._pending_hops:
                self._pending_hops.discard(message.message_id)
                return  # the worker moving a due message off the delay queue: not a new send
            attempt = self._attempts.get(message) if isinstance(message, MessageProxy) else None
            if attempt is not None and delay is not None and exc is not None:
                # Retries enqueues from inside emit_after, which swallows this error and acks the message.
                attempt.retry_failed = True
            extra = ((semconv.ERROR_TYPE, qualified_name(exc)),) if exc is not None else ()
            key, attributes = self._labels(broker, message.queue_name, message.actor_name, "send", extra)
            instruments = self.instruments
            instruments.sent.add(key, attributes)
            instruments.operation_duration.record(seconds, attributes)
        except Exception:
            _hook_failed("could not record a publish")

    # -- consumer side ---------------------------------------------------------------------------

    def before_delay_message(self, broker: Broker, message: MessageProxy) -> None:
        self._pending_hops.add(message.message_id)

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        try:
            attempt = _Attempt(time.perf_counter())
            self._attempts.put(message, attempt)
            inner = inner_message(message)
            key, attributes = self._labels(broker, inner.queue_name, inner.actor_name, None)
            instruments = self.instruments
            instruments.in_flight.add(key, attributes)
            instruments.queue_wait.record(queue_wait_ms(inner.message_timestamp, inner.options) / 1000, attributes)
        except Exception:
            _hook_failed("could not record process start")

    def end_delivery(
        self, broker: Broker, message: MessageProxy, *, exception: BaseException | None, skipped: bool
    ) -> None:
        try:
            attempt = self._attempts.get(message)
            if attempt is None:
                attempt = _Attempt()
                self._attempts.put(message, attempt)
            attempt.exception = exception
            attempt.skipped = skipped
            if attempt.started is not None:
                attempt.duration = time.perf_counter() - attempt.started
                attempt.started = None
                key, attributes = self._labels(broker, message.queue_name, message.actor_name, None)
                self.instruments.in_flight.add(key, attributes, -1)
        except Exception:
            _hook_failed("could not record process end")

    def before_ack(self, broker: Broker, message: MessageProxy) -> None:
        attempt = self._attempts.take(message)
        if attempt is not None:  # None: a delay-queue hop, or a delivery already counted
            self._settle(broker, message, attempt, dead_lettered=False)

    def before_nack(self, broker: Broker, message: MessageProxy) -> None:
        attempt = self._attempts.take(message)
        failure = proxy_exception(message)
        if attempt is None and isinstance(failure, ActorNotFound):
            attempt = _Attempt()  # an unknown actor never reaches the process hooks
            attempt.exception = failure
        if attempt is not None:
            self._settle(broker, message, attempt, dead_lettered=True)

    def _settle(self, broker: Broker, message: MessageProxy, attempt: _Attempt, *, dead_lettered: bool) -> None:
        try:
            exception = attempt.exception
            thrown = exception is not None and is_thrown(broker, message, exception)
            inner = inner_message(message)
            queue, actor = inner.queue_name, inner.actor_name
            base_key, base = self._labels(broker, queue, actor, None)
            instruments = self.instruments
            instruments.consumed.add(*self._labels(broker, queue, actor, "process"))
            if redelivered(message):  # RabbitMQ's proxy only
                instruments.redelivered.add(base_key, base)
            if attempt.skipped:
                instruments.skipped.add(base_key, base)
            outcome: Outcome
            if dead_lettered:
                outcome = "dead_lettered"
                reason = dead_letter_reason(exception, skipped=attempt.skipped, thrown=thrown)
                instruments.dead_lettered.add(
                    *self._labels(broker, queue, actor, None, ((semconv.DEAD_LETTER_REASON, reason),))
                )
            elif attempt.skipped:
                outcome = "skipped"
            elif exception is None:
                outcome = "success"
            elif attempt.retry_failed:
                outcome = "lost"
            else:
                outcome = "retrying"
                instruments.retried.add(base_key, base)
            if outcome in ("success", "dead_lettered"):
                # message_timestamp survives Retries' and the delay queue's copies: it is the first send.
                since_send = max(0.0, time.time() - inner.message_timestamp / 1000)
                _, labels = self._labels(broker, queue, actor, None, ((semconv.OUTCOME, outcome),))
                instruments.end_to_end.record(since_send, labels)
            if attempt.duration is not None:
                extra: tuple[tuple[str, str], ...] = ((semconv.OUTCOME, outcome),)
                if exception is not None and not thrown and not isinstance(exception, Retry):
                    extra += ((semconv.ERROR_TYPE, qualified_name(exception)),)
                _, labels = self._labels(broker, queue, actor, "process", extra)
                instruments.process_duration.record(attempt.duration, labels)
        except Exception:
            _hook_failed("could not record a settled delivery")

    # -- process lifecycle -----------------------------------------------------------------------

    def after_worker_shutdown(self, broker: Broker, worker: dramatiq.Worker) -> None:
        """Flush metrics: forked worker processes leave through ``os._exit``, so atexit never runs."""
        self.flush()

    def flush(self, timeout_millis: int = 30_000) -> None:
        """Force-flush the meter provider, if it can be flushed, within ``timeout_millis``. Never raises."""
        flush_telemetry(timeout_millis, spans=False, log_records=False, meter_provider=self._meter_provider)
