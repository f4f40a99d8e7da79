"""``server.address``/``server.port`` per broker, read from its configuration without connecting."""

from __future__ import annotations

import redis
from dramatiq.broker import Broker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from redis.sentinel import Sentinel

from observability.broker_facts import broker_attributes


def server(broker: Broker) -> dict:
    attributes = broker_attributes(broker, "work", "send")
    return {key: value for key, value in attributes.items() if key.startswith("server.")}


def test_redis_host_and_port_come_from_the_connection_pool() -> None:
    """A TCP Redis broker names its host and port."""
    broker = RedisBroker(host="10.0.0.5", port=6380)
    assert broker_attributes(broker, "work", "send")["messaging.system"] == "redis"
    assert server(broker) == {"server.address": "10.0.0.5", "server.port": 6380}


def test_redis_url_without_a_port_gets_redis_default_port() -> None:
    """``redis://host/0`` connects to 6379, so the span says so."""
    assert server(RedisBroker(url="redis://cache.internal/0")) == {
        "server.address": "cache.internal",
        "server.port": 6379,
    }


def test_redis_unix_socket_is_the_address_with_no_port() -> None:
    """The conventions name a Unix domain socket in ``server.address``; it has no port."""
    assert server(RedisBroker(url="unix:///run/redis/redis.sock")) == {"server.address": "/run/redis/redis.sock"}


def test_redis_client_passed_in_is_read_too() -> None:
    """``RedisBroker(client=...)`` is read through the same pool."""
    client = redis.Redis(host="127.0.0.1", port=6390)
    assert server(RedisBroker(client=client)) == {"server.address": "127.0.0.1", "server.port": 6390}


def test_redis_sentinel_names_no_server_rather_than_a_guess() -> None:
    """A Sentinel pool learns its master only when it connects: no server attributes."""
    client = Sentinel([("127.0.0.1", 26379)]).master_for("mymaster")
    assert server(RedisBroker(client=client)) == {}


def test_stub_broker_has_no_server() -> None:
    """The in-process broker has no server to name."""
    assert server(StubBroker()) == {}


def test_attributes_are_computed_once_per_queue_and_operation() -> None:
    """The same mapping comes back for the same (queue, operation), a new one for another operation."""
    broker = RedisBroker(host="10.0.0.5")
    first = broker_attributes(broker, "work", "process")
    assert broker_attributes(broker, "work", "process") is first
    assert broker_attributes(broker, "work", "nack") is not first
