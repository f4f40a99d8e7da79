"""State a middleware keeps for one message between two of its hooks, held by the middleware itself.

Hooks of one delivery run on two threads (process hooks on a worker thread, ``before_ack``/``before_nack``
on the consumer thread), so a context variable cannot carry state from one to the other. Writing it onto
the ``MessageProxy`` under a name of ours would work but puts our fields on Dramatiq's object; this keeps
them here instead, keyed by the proxy's identity: ``MessageProxy`` compares by message value, so it is
neither hashable nor safe to tell two deliveries of one message apart by equality.
"""

from __future__ import annotations

import weakref
from typing import Generic, TypeVar

from dramatiq.broker import MessageProxy

__all__ = ["MessageState"]

T = TypeVar("T")


class MessageState(Generic[T]):
    """A value per in-flight message, put by one hook and taken by a later one (possibly on another thread).

    Dict operations are atomic under the GIL, so no lock is needed for one put and one take per message.
    """

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[int, tuple[weakref.ref[MessageProxy], T]] = {}

    def put(self, message: MessageProxy, value: T) -> None:
        """Keep ``value`` for ``message`` until :meth:`take`; replaces an earlier one."""
        key = id(message)
        values = self._values

        def forget(_: weakref.ref[MessageProxy]) -> None:
            values.pop(key, None)  # collected untaken: its id may be reused by another proxy

        values[key] = (weakref.ref(message, forget), value)

    def get(self, message: MessageProxy) -> T | None:
        """The value kept for ``message``, left in place."""
        entry = self._values.get(id(message))
        return entry[1] if entry is not None and entry[0]() is message else None

    def take(self, message: MessageProxy) -> T | None:
        """The value kept for ``message``, removed; ``None`` when there is none."""
        entry = self._values.pop(id(message), None)
        if entry is None:
            return None
        if entry[0]() is not message:  # a stale entry of a collected proxy with the same id
            return None
        return entry[1]

    def __len__(self) -> int:
        return len(self._values)
