"""Shared fixtures: one in-memory span exporter for the session, a traced StubBroker and its worker.

The global tracer provider is set once, to an SDK provider with an in-memory exporter, because the
services create their tracers through the OpenTelemetry API at import time (as contrib libraries do):
only a global provider sees their spans. Each test starts with an empty exporter.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

# Before anything imports ``actors``: no exporter to a collector, and the in-process broker.
os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
os.environ.setdefault("BROKER_URL", "memory://")

import dramatiq
import pytest
import structlog
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO, GroupCallbacks, default_middleware
from dramatiq.rate_limits.backends import StubBackend
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from observability import Tracing, install
from tests.rabbitmq_node import RabbitmqNode, RabbitmqNodeUnavailable

_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))
trace.set_tracer_provider(_PROVIDER)


@pytest.fixture
def span_exporter() -> Iterator[InMemorySpanExporter]:
    """The session's in-memory exporter, emptied before and after the test."""
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


@pytest.fixture(autouse=True)
def _clean_structlog_context() -> Iterator[None]:
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()


def make_stub_broker(tracing: Tracing | None = None, broker_class: type[StubBroker] = StubBroker) -> StubBroker:
    """A StubBroker with Dramatiq's default middleware, AsyncIO, GroupCallbacks and our tracing first."""
    middleware = [factory() for factory in default_middleware]
    middleware += [AsyncIO(), GroupCallbacks(StubBackend())]
    broker = broker_class(middleware=middleware)
    install(broker, tracing or Tracing())
    return broker


def drain(broker: StubBroker, queue: str = "work", *, threads: int = 1, fail_fast: bool = True) -> None:
    """Run a fresh worker on ``broker`` until ``queue`` (and its delay queue) is empty, then stop it."""
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=threads)
    worker.start()
    try:
        broker.join(queue, fail_fast=fail_fast)
        worker.join()
    finally:
        worker.stop()


@pytest.fixture
def stub_broker(span_exporter: InMemorySpanExporter) -> Iterator[StubBroker]:
    """A traced StubBroker set as Dramatiq's global broker."""
    broker = make_stub_broker()
    dramatiq.set_broker(broker)
    yield broker
    broker.flush_all()
    broker.close()


@pytest.fixture
def stub_worker(stub_broker: StubBroker) -> Iterator[dramatiq.Worker]:
    """A worker with 2 threads on the stub broker."""
    worker = dramatiq.Worker(stub_broker, worker_timeout=50, worker_threads=2)
    worker.start()
    yield worker
    worker.stop()


def ci_requires_services() -> bool:
    """On CI a missing server is a failure, never a skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


def require_rabbitmq() -> None:
    """Skip when RabbitMQ is down locally; fail on CI, where it must be up."""
    import pika

    try:
        pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)).close()
    except Exception as exc:
        if ci_requires_services():
            pytest.fail(f"RabbitMQ is required on CI and unreachable at {RABBITMQ_URL}: {exc!r}")
        pytest.skip(f"RabbitMQ unreachable at {RABBITMQ_URL}")


REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def require_redis() -> None:
    """Skip when Redis is down locally; fail on CI, where it must be up."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        if ci_requires_services():
            pytest.fail(f"Redis is required on CI and unreachable at {REDIS_URL}: {exc!r}")
        pytest.skip(f"Redis unreachable at {REDIS_URL}")


@contextlib.contextmanager
def throwaway_rabbitmq_node(node: RabbitmqNode) -> Iterator[RabbitmqNode]:
    """Start ``node`` (tests/rabbitmq_node.py), yield it, stop it. Skipped when it cannot start locally; on CI
    that is a failure. The machine's own RabbitMQ is never touched."""
    try:
        node.start()
    except RabbitmqNodeUnavailable as exc:
        if ci_requires_services():
            pytest.fail(f"a throwaway RabbitMQ node is required on CI and did not start: {exc}")
        pytest.skip(f"cannot start a throwaway RabbitMQ node: {str(exc).splitlines()[0]}")
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def rabbitmq_prometheus_node() -> Iterator[RabbitmqNode]:
    """A throwaway RabbitMQ node with ``rabbitmq_prometheus`` on loopback ports, stopped at the end of the session.

    Not the server at RABBITMQ_URL, whose plugins stay as they are.
    """
    with throwaway_rabbitmq_node(RabbitmqNode()) as node:
        yield node
