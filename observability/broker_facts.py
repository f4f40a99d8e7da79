"""What a span or metric says about the broker: system, server, cached attributes and Retries' defaults.

Each is computed once per broker and cached here, weakly keyed by the broker object, rather than stored
on the broker under attribute names of ours.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

from dramatiq.broker import Broker
from dramatiq.middleware import Retries
from opentelemetry.util.types import AttributeValue

from observability import semconv

__all__ = ["broker_attributes", "messaging_system", "resolve_max_retries"]

_attribute_caches: weakref.WeakKeyDictionary[Broker, dict[tuple[str, str], Mapping[str, AttributeValue]]] = (
    weakref.WeakKeyDictionary()
)
_systems: dict[type[Broker], str] = {}  # by class: the system depends on nothing else, and classes are few
_retries_defaults: weakref.WeakKeyDictionary[Broker, int | None] = weakref.WeakKeyDictionary()


def messaging_system(broker: Broker) -> str:
    """The ``messaging.system`` value: the real broker, as the conventions ask, never "dramatiq"."""
    broker_class = type(broker)
    system = _systems.get(broker_class)
    if system is None:
        system = _systems[broker_class] = _system_of(broker_class)
    return system


def _system_of(broker_class: type[Broker]) -> str:
    # By the Dramatiq class in the MRO, so subclasses (ours adds queue arguments) keep the right system.
    names = {cls.__name__ for cls in broker_class.__mro__}
    if "RabbitmqBroker" in names:
        return "rabbitmq"
    if "RedisBroker" in names:
        return "redis"
    return "dramatiq"


def broker_attributes(broker: Broker, queue: str, operation: str) -> Mapping[str, AttributeValue]:
    """The attributes that depend only on broker, queue and operation, computed once and cached.

    These are the sampling-relevant ones, so they are passed at span start.
    """
    # Weakly keyed by the broker: an id()-keyed cache could hand a new broker a dead one's attributes.
    cache = _attribute_caches.get(broker)
    if cache is None:
        cache = _attribute_caches[broker] = {}
    key = (queue, operation)
    cached = cache.get(key)
    if cached is not None:
        return cached
    system = messaging_system(broker)
    operation_type = {"send": "send", "process": "process", "nack": "settle"}[operation]
    attributes: dict[str, AttributeValue] = {
        semconv.MESSAGING_SYSTEM: system,
        semconv.MESSAGING_OPERATION_TYPE: operation_type,
        semconv.MESSAGING_OPERATION_NAME: operation,
        semconv.MESSAGING_DESTINATION_NAME: queue,
    }
    if system == "rabbitmq":
        attributes[semconv.MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY] = queue
    attributes.update(_server_attributes(broker, system))
    cache[key] = attributes
    return attributes


def _server_attributes(broker: Broker, system: str) -> dict[str, AttributeValue]:
    """``server.address``/``server.port`` of the broker's server, when its configuration names one."""
    if system == "rabbitmq":
        # RabbitmqBroker keeps one URLParameters (url=...) or a list of ConnectionParameters.
        parameters = getattr(broker, "parameters", None)
        first = parameters[0] if isinstance(parameters, list) and parameters else parameters
        host, port = getattr(first, "host", None), getattr(first, "port", None)
        if host is not None and port is not None:
            return {semconv.SERVER_ADDRESS: str(host), semconv.SERVER_PORT: int(port)}
    elif system == "redis":
        # RedisBroker's client (url=..., host=... or client=...) keeps its settings on the pool, as
        # contrib's redis instrumentation reads them. A Unix socket is named by ``server.address`` alone;
        # a Sentinel pool names no host until it connects, so it gets nothing rather than a guess.
        pool = getattr(getattr(broker, "client", None), "connection_pool", None)
        kwargs = getattr(pool, "connection_kwargs", None)
        if isinstance(kwargs, Mapping):
            path, host = kwargs.get("path"), kwargs.get("host")
            if isinstance(path, str) and path:
                return {semconv.SERVER_ADDRESS: path}
            if isinstance(host, str) and host:
                port = kwargs.get("port")
                # redis-py's Connection defaults to 6379 when a URL names no port.
                return {semconv.SERVER_ADDRESS: host, semconv.SERVER_PORT: int(port) if port else 6379}
    return {}


def resolve_max_retries(broker: Broker, actor_name: str, options: Mapping[str, Any]) -> int | None:
    """``max_retries`` as Dramatiq's ``Retries`` resolves it: message option, actor option, middleware default."""
    value = options.get("max_retries")
    if value is None:
        actor = broker.actors.get(actor_name)
        if actor is not None:
            value = actor.options.get("max_retries")
    if value is None:
        value = _retries_default(broker)
    return value if isinstance(value, int) else None


def _retries_default(broker: Broker) -> int | None:
    if broker in _retries_defaults:
        return _retries_defaults[broker]
    retries = next((m for m in broker.middleware if isinstance(m, Retries)), None)
    default = _retries_defaults[broker] = retries.max_retries if retries is not None else None
    return default
