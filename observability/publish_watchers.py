"""One wrapper of ``broker.enqueue`` per broker, shared by every middleware that watches publishes.

Publishes are watched around the broker's own ``enqueue`` rather than in ``before_enqueue``/``after_enqueue``:
RabbitMQ's reconnect loop fires ``before_enqueue`` several times for one message and never fires
``after_enqueue`` when the publish fails, so hook-only spans and counters either duplicate or leak.
``Tracing`` and ``Metrics`` both need it; one wrapper (installed the first time either asks, on that broker
instance) calls each of them, so a publish pays one extra Python frame, not one per middleware.

Dramatiq's private fields the core reads are all in ``observability/dramatiq_internals.py``.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import dramatiq
from dramatiq.broker import Broker
from dramatiq.message import Message

from observability.failure_reporting import failure_reporter

__all__ = ["PublishWatcher", "PublishWatchingMiddleware", "unwatch_publishes", "watch_publishes", "watchers_of"]

_hook_failed = failure_reporter(logging.getLogger(__name__), "publish watcher")


class PublishWatcher(Protocol):
    """What a middleware implements to see every publish once, whatever the broker's retry loop does."""

    def publish_started(self, broker: Broker, message: Message[Any], delay: int | None) -> object:
        """Called before the broker publishes; the return value comes back to :meth:`publish_ended`."""

    def publish_ended(self, state: object, exception: BaseException | None) -> None:
        """Called after the publish returned or raised ``exception``. Must not raise."""


class PublishWatchingMiddleware(dramatiq.Middleware):
    """A middleware that watches every publish of a broker once the broker declares its first actor or queue.

    Subclasses implement :class:`PublishWatcher`'s two methods (``Tracing`` and ``Metrics`` do).
    """

    def publish_started(self, broker: Broker, message: Message[Any], delay: int | None) -> object:
        raise NotImplementedError

    def publish_ended(self, state: object, exception: BaseException | None) -> None:
        raise NotImplementedError

    def after_declare_actor(self, broker: Broker, actor: dramatiq.Actor[Any, Any]) -> None:
        self.instrument(broker)

    def after_declare_queue(self, broker: Broker, queue_name: str) -> None:
        self.instrument(broker)

    def instrument(self, broker: Broker) -> None:
        """Watch every publish through ``broker`` once. Idempotent."""
        watch_publishes(broker, self)

    def uninstrument(self, broker: Broker) -> bool:
        """Stop watching publishes through ``broker`` (the hooks stay until the middleware is removed).

        Returns:
            Whether ``broker.enqueue`` is free of our wrapper: false when something wrapped it over ours.
        """
        return unwatch_publishes(broker, self)


class _Wrapper:
    __slots__ = ("enqueue", "original", "watchers")

    def __init__(self, original: Callable[..., Message[Any]]) -> None:
        self.original = original
        self.watchers: list[PublishWatcher] = []
        self.enqueue: Callable[..., Message[Any]] | None = None


_wrappers: weakref.WeakKeyDictionary[Broker, _Wrapper] = weakref.WeakKeyDictionary()


def watch_publishes(broker: Broker, watcher: PublishWatcher) -> None:
    """Have ``watcher`` see every publish through ``broker`` from now on. Idempotent."""
    wrapper = _wrappers.get(broker)
    if wrapper is None:
        wrapper = _wrappers[broker] = _Wrapper(broker.enqueue)
        wrapper.enqueue = _make_enqueue(broker, wrapper)
        broker.enqueue = wrapper.enqueue  # type: ignore[method-assign]
    if watcher not in wrapper.watchers:
        wrapper.watchers.append(watcher)


def unwatch_publishes(broker: Broker, watcher: PublishWatcher) -> bool:
    """Stop ``watcher`` seeing publishes; the last one gone puts the broker's ``enqueue`` back as it was.

    Returns:
        Whether ``broker.enqueue`` is free of our wrapper now: false while other watchers remain, or when
        something wrapped ours since (removing ours would remove theirs; ours then calls nobody).
    """
    wrapper = _wrappers.get(broker)
    if wrapper is None:
        return True
    if watcher in wrapper.watchers:
        wrapper.watchers.remove(watcher)
    if wrapper.watchers or broker.__dict__.get("enqueue") is not wrapper.enqueue:
        return False
    del _wrappers[broker]
    if getattr(wrapper.original, "__self__", None) is broker:
        del broker.enqueue  # the class's method again
    else:
        broker.enqueue = wrapper.original  # type: ignore[method-assign]  # someone's wrapper from before ours
    return True


def watchers_of(broker: Broker) -> tuple[PublishWatcher, ...]:
    """Who sees the publishes through ``broker`` now, in the order they are called."""
    wrapper = _wrappers.get(broker)
    return tuple(wrapper.watchers) if wrapper is not None else ()


def _make_enqueue(broker: Broker, wrapper: _Wrapper) -> Callable[..., Message[Any]]:
    original = wrapper.original
    watchers = wrapper.watchers

    def enqueue(message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        started: list[tuple[PublishWatcher, object]] = []
        for watcher in watchers:
            try:
                started.append((watcher, watcher.publish_started(broker, message, delay)))
            except Exception:
                _hook_failed("could not start watching a publish")  # that watcher sits this one out
        try:
            result = original(message, delay=delay)
        except BaseException as exc:
            for watcher, state in reversed(started):
                watcher.publish_ended(state, exc)
            raise
        for watcher, state in reversed(started):
            watcher.publish_ended(state, None)
        return result

    return enqueue
