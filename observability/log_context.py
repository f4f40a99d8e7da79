"""The ``LogContext`` middleware: message fields on every log line written while a message is processed.

Worker threads are reused, so fields are bound per message with contextvars tokens and reset in the
after hooks; nothing leaks to the next message on that thread.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import dramatiq
import structlog
from dramatiq.broker import Broker, MessageProxy

__all__ = ["LogContext"]

_TOKENS_ATTR: Final = "_log_context_tokens"
_log = logging.getLogger(__name__)


class LogContext(dramatiq.Middleware):
    """Bind ``message_id``, ``actor``, ``queue`` and ``retries`` to structlog's contextvars per message."""

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        try:
            inner = message.__dict__.get("_message", message)  # skip MessageProxy.__getattr__ per field
            retries = inner.options.get("retries", 0)
            tokens = structlog.contextvars.bind_contextvars(
                message_id=inner.message_id,
                actor=inner.actor_name,
                queue=inner.queue_name,
                retries=retries if isinstance(retries, int) else 0,
            )
            setattr(message, _TOKENS_ATTR, tokens)
        except Exception:
            _log.debug("could not bind log context", exc_info=True)

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        tokens = message.__dict__.pop(_TOKENS_ATTR, None)
        if tokens is None:
            return
        try:
            structlog.contextvars.reset_contextvars(**tokens)
        except Exception:
            _log.debug("could not reset log context", exc_info=True)
            structlog.contextvars.unbind_contextvars(*tokens)

    after_skip_message = after_process_message
