"""Tracing for periodiq ticks, and a span flush when the scheduler is stopped.

The periodiq scheduler sends each due actor with ``actor.send_with_options(scheduled_at=<time>)`` from its
main thread, where no span is ever current, so every tick starts a new trace. :class:`PeriodicActor` opens
that trace with a root ``tick <actor>`` span naming the schedule (cron spec, scheduled time, lateness); the
``send <queue>`` span of the Tracing middleware is its child, and the worker's ``process <queue>`` follows.

The scheduler installs no SIGTERM handler, so the default action kills it without running ``atexit``
and every span still queued is lost. :func:`install_flush_on_sigterm` fixes that, in the scheduler
process only: it is never installed in a Dramatiq worker (which has its own shutdown) or in a test run.
"""

from __future__ import annotations

import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, Final, ParamSpec, TypeVar

import dramatiq
import structlog
from dramatiq.message import Message
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from observability import semconv
from observability.flushing import flush_telemetry

__all__ = [
    "CRON",
    "LATENESS_MS",
    "SCHEDULED_AT",
    "PeriodicActor",
    "install_flush_on_sigterm",
    "is_scheduler_process",
]

P = ParamSpec("P")
R = TypeVar("R")

# Our own keys, in the project's ``dramatiq.`` namespace: the messaging conventions have no schedule terms.
CRON: Final = semconv.SCHEDULE_CRON
SCHEDULED_AT: Final = semconv.SCHEDULE_SCHEDULED_AT
LATENESS_MS: Final = semconv.SCHEDULE_LATENESS_MS
_ACTOR_NAME: Final = semconv.ACTOR_NAME
_MESSAGE_ID: Final = semconv.MESSAGING_MESSAGE_ID

_FLUSH_TIMEOUT_MILLIS: Final = 10_000

_tracer = trace.get_tracer(__name__)
_log = structlog.get_logger(__name__)


class PeriodicActor(dramatiq.Actor[P, R]):
    """An actor whose scheduled sends start a trace with a ``tick <actor>`` root span.

    Only a send that carries periodiq's ``scheduled_at`` option and has no current span is a tick: a
    manual ``.send()`` (no ``scheduled_at``), or a send from inside another trace, stays as it was.
    """

    def send_with_options(
        self,
        *,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        delay: timedelta | int | None = None,
        **options: Any,
    ) -> Message[R]:
        scheduled_at = options.get("scheduled_at")
        if scheduled_at is None or trace.get_current_span().get_span_context().is_valid:
            return super().send_with_options(args=args, kwargs=kwargs, delay=delay, **options)
        # INTERNAL, not PRODUCER: the messaging conventions give PRODUCER to the span that publishes, and
        # that is the ``send <queue>`` child. Two nested PRODUCER spans would be read as two publishes.
        with _tracer.start_as_current_span(
            semconv.span_name("tick", self.actor_name),
            kind=SpanKind.INTERNAL,
            attributes=self._tick_attributes(str(scheduled_at)),
        ) as span:
            _stop.sending += 1
            try:
                message = super().send_with_options(args=args, kwargs=kwargs, delay=delay, **options)
            finally:
                _stop.sending -= 1
            span.set_attribute(_MESSAGE_ID, message.message_id)
        if _stop.requested and _stop.sending == 0:
            _flush_and_exit()  # SIGTERM arrived mid-publish: the tick went out whole, now stop.
        return message

    def _tick_attributes(self, scheduled_at: str) -> dict[str, str | int]:
        attributes: dict[str, str | int] = {
            _ACTOR_NAME: self.actor_name,
            CRON: str(self.options.get("periodic", "")),
            SCHEDULED_AT: scheduled_at,
        }
        lateness = lateness_ms(scheduled_at)
        if lateness is not None:
            attributes[LATENESS_MS] = lateness
        return attributes


def lateness_ms(scheduled_at: str, now: datetime | None = None) -> int | None:
    """``now - scheduled_at`` in milliseconds, or None when ``scheduled_at`` is not an ISO 8601 time.

    periodiq rounds the tick time to the second after adding 0.5 s, so an on-time tick reads
    between -500 and 0; a scheduler that slept through its alarm shows up as a large positive value.
    """
    try:
        when = datetime.fromisoformat(scheduled_at)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.astimezone()  # periodiq always sends an offset; a naive time is local, as pendulum's
    return int(((now or datetime.now(UTC)) - when).total_seconds() * 1000)


# -- the scheduler's SIGTERM ----------------------------------------------------------------------------


class _StopState:
    __slots__ = ("requested", "sending")

    def __init__(self) -> None:
        self.requested = False
        self.sending = 0


_stop = _StopState()


def is_scheduler_process() -> bool:
    """True in the ``periodiq`` CLI process: its console script's ``__main__`` runs periodiq's entrypoint."""
    main = sys.modules.get("__main__")
    if main is not None and "periodiq" in sys.modules:
        entrypoint = getattr(sys.modules["periodiq"], "entrypoint", None)
        if entrypoint is not None and getattr(main, "entrypoint", None) is entrypoint:
            return True
    return bool(sys.argv) and Path(sys.argv[0]).name == "periodiq"


def install_flush_on_sigterm() -> bool:
    """In the periodiq scheduler, make SIGTERM flush the tracer provider and exit 0. Returns whether installed.

    A SIGTERM that lands while a tick is being published is honoured once that publish returns, so no tick
    is cut in half; a second SIGTERM exits at once.
    """
    if not is_scheduler_process() or threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGTERM, _on_sigterm)
    return True


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if _stop.requested:
        raise SystemExit(0)  # a second SIGTERM: stop now, even mid-flush
    _stop.requested = True
    if _stop.sending:
        _log.info("scheduler_stopping", waiting_for="tick publish")
        return
    _flush_and_exit()


def _flush_and_exit() -> None:
    _log.info("scheduler_stopping", flushing_spans=True)
    flush_telemetry(_FLUSH_TIMEOUT_MILLIS, metrics=False, log_records=False)
    # SystemExit unwinds periodiq's loop (its entrypoint catches only Exception), so atexit still runs.
    raise SystemExit(0)
