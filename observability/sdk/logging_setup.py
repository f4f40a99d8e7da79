"""structlog for the whole process: JSON lines off a TTY, a readable console on one, trace ids on every line.

Dramatiq and periodiq log through the standard library (and call ``basicConfig`` first), so the root
handlers are replaced and their records go through ``ProcessorFormatter`` with the same pre-chain as
structlog's own events: Dramatiq's "Failed to process message" line then carries the trace id too.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from observability.log_context import add_trace_context
from observability.sdk.log_redaction import HideMessageArguments, exception_text

__all__ = ["configure_logging"]

#: Libraries whose INFO lines are connection chatter; ``configure_logging`` sets them to WARNING.
_CHATTY_AT_INFO = ("pika",)


def configure_logging(
    *, level: str = "INFO", json: bool | None = None, stream: TextIO | None = None, capture_personal_data: bool = False
) -> None:
    """Configure structlog and the stdlib root logger once for this process.

    Args:
        level: the root level name.
        json: JSON lines when true, the console renderer when false; by default JSON unless the stream
            is a TTY.
        stream: where lines go; stdout by default.
        capture_personal_data: log Dramatiq messages with their arguments and exceptions with their texts. Off:
            ``place_order(...) <id>`` and each exception's type only, unless its class says ``safe_to_log``
            (observability/sdk/log_redaction.py).
    """
    out = stream or sys.stdout
    use_json = not out.isatty() if json is None else json
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_context,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _ExceptionText(capture_personal_data),
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    if not capture_personal_data:
        handler.addFilter(HideMessageArguments())
    root = logging.getLogger()
    # The OTLP handler configure_log_export set up stays (its module is loaded only if it did).
    log_handler = sys.modules.get("observability.sdk.log_handler")
    keep: tuple[type, ...] = (log_handler.OtlpLogHandler,) if log_handler is not None else ()
    for existing in list(root.handlers):
        if not isinstance(existing, keep):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # pika logs every connection it opens and closes at INFO: in the API and the scheduler that is a line per
    # reconnect, saying nothing a user acts on. Raised, never lowered: Dramatiq's worker processes set it to
    # CRITICAL before importing the broker, and an operator may have chosen another level.
    for name in _CHATTY_AT_INFO:
        chatty = logging.getLogger(name)
        if chatty.level < logging.WARNING:
            chatty.setLevel(logging.WARNING)


class _ExceptionText:
    """Renders ``exc_info`` as the ``exception`` text, each exception's text hidden unless ``capture``."""

    def __init__(self, capture: bool) -> None:
        self.capture = capture

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        exc_info = event_dict.pop("exc_info", None)
        if exc_info:
            text = exception_text(exc_info, capture=self.capture)
            if text is not None:
                event_dict["exception"] = text
        return event_dict
