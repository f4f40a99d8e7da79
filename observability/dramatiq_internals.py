"""Every use of Dramatiq's private API in the core, in one place, each with why it is needed.

Dramatiq 2.2 has no public accessor for these; if one appears, or a release renames a field, this module
is the only one to change. ``observability/publish_watchers.py`` also replaces ``enqueue`` on broker instances
(a public method, wrapped per instance) and ``observability/instrumentor.py`` reads
``dramatiq.broker.global_broker`` (``get_broker()`` would create a broker when there is none).
"""

from __future__ import annotations

from typing import Any

from dramatiq.broker import MessageProxy
from dramatiq.message import Message

__all__ = ["delivery_tag", "inner_message", "proxy_exception", "redelivered"]


def inner_message(proxy: MessageProxy) -> Message[Any]:
    """The decoded message behind ``proxy``: reading fields through it skips ``MessageProxy.__getattr__``,
    one Python call per field on the hot path (``_message``)."""
    message: Message[Any] = proxy.__dict__.get("_message", proxy)
    return message


def redelivered(proxy: MessageProxy) -> bool | None:
    """RabbitMQ's ``redelivered`` flag (set by its consumer on the proxy); ``None`` on other brokers."""
    value = proxy.__dict__.get("redelivered")
    return None if value is None else bool(value)


def delivery_tag(proxy: MessageProxy) -> int | None:
    """RabbitMQ's delivery tag of this delivery (``_tag``); ``None`` on other brokers."""
    tag = proxy.__dict__.get("_tag")
    return tag if isinstance(tag, int) else None


def proxy_exception(proxy: MessageProxy) -> BaseException | None:
    """The exception the worker stuffed into the proxy (``_exception``): why a message failed or was skipped,
    and the only way ``before_nack`` learns that the actor was unknown."""
    exception: BaseException | None = proxy.__dict__.get("_exception")
    return exception
