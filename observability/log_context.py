"""What every log line written for a message carries: its message fields and the current trace ids.

Worker threads are reused, so fields are bound per message with contextvars tokens and reset in the
after hooks; nothing leaks to the next message on that thread.

structlog is imported when a ``LogContext`` is made, not with this module: importing structlog loads
``structlog.dev`` and, where rich is installed, rich's traceback machinery (about half a second), which a
project using only ``Tracing`` should not pay.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.broker import Broker, MessageProxy
from opentelemetry import trace

from observability.dramatiq_internals import inner_message

if TYPE_CHECKING:
    from structlog.typing import EventDict, WrappedLogger

__all__ = ["LogContext", "add_trace_context"]

_log = logging.getLogger(__name__)
# Both process hooks of a delivery run on its worker thread, so its tokens wait in a context var.
_tokens: ContextVar[Mapping[str, Token[Any]] | None] = ContextVar("log_context_tokens", default=None)


class LogContext(dramatiq.Middleware):
    """Bind ``message_id``, ``actor``, ``queue`` and ``retries`` to structlog's contextvars per message."""

    def __init__(self) -> None:
        import structlog.contextvars

        self._contextvars = structlog.contextvars

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        try:
            inner = inner_message(message)
            retries = inner.options.get("retries", 0)
            tokens = self._contextvars.bind_contextvars(
                message_id=inner.message_id,
                actor=inner.actor_name,
                queue=inner.queue_name,
                retries=retries if isinstance(retries, int) else 0,
            )
            _tokens.set(tokens)
        except Exception:
            _log.debug("could not bind log context", exc_info=True)

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        tokens = _tokens.get()
        if tokens is None:
            return
        _tokens.set(None)
        try:
            self._contextvars.reset_contextvars(**tokens)
        except Exception:
            _log.debug("could not reset log context", exc_info=True)
            self._contextvars.unbind_contextvars(*tokens)

    after_skip_message = after_process_message


def add_trace_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """A structlog processor adding ``trace_id`` and ``span_id`` of the current span, in Jaeger's hex form."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict.setdefault("trace_id", format(span_context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(span_context.span_id, "016x"))
    return event_dict
