"""No actor argument or exception text in log lines unless personal data capture is on.

Dramatiq logs a message as ``place_order({'customer_email': 'ada@example.com', ...})`` ("Failed to process
message %s", "Message %s was skipped") and attaches the exception, whose text often quotes the input too. With
capture off, :class:`HideMessageArguments` (a handler filter) turns each Dramatiq message among a record's
arguments into ``place_order(...) <message id>``, and :func:`exception_text` renders tracebacks with each
exception's text hidden unless its class declares ``safe_to_log = True`` (observability/personal_data.py).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from dramatiq.broker import MessageProxy
from dramatiq.message import Message

from observability.exception_events import stack_trace

__all__ = ["HideMessageArguments", "exception_text"]


class _Hidden:
    """Stands for a message in a log line: its actor and id, never its arguments."""

    __slots__ = ("text",)

    def __init__(self, message: Message[Any] | MessageProxy) -> None:
        self.text = f"{message.actor_name}(...) {message.message_id}"

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


class HideMessageArguments(logging.Filter):
    """A handler filter: Dramatiq messages among a record's ``%`` arguments are logged without their arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(arg, Message | MessageProxy) for arg in args):
            record.args = tuple(_Hidden(arg) if isinstance(arg, Message | MessageProxy) else arg for arg in args)
        return True


def exception_text(exc_info: Any, *, capture: bool) -> str | None:
    """The traceback of ``exc_info`` (a tuple, or True for the one being handled), texts hidden unless ``capture``."""
    if exc_info is True:
        exc_info = sys.exc_info()
    if not isinstance(exc_info, tuple) or len(exc_info) != 3 or exc_info[1] is None:
        return None
    return stack_trace(exc_info[1], capture=capture)
