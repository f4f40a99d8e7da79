"""Shared fixtures: one in-memory span exporter for the session, a traced StubBroker and its worker; the test
environment's fixtures come from tests/environment/fixtures.py (``pytest_plugins``).

The global tracer provider is set once, to an SDK provider with an in-memory exporter, because the
services create their tracers through the OpenTelemetry API at import time (as contrib libraries do):
only a global provider sees their spans. Each test starts with an empty exporter.
"""

from __future__ import annotations

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

# The test environment's fixtures (OTLP receiver, SMTP server, throwaway RabbitMQ node): tests/environment/.
pytest_plugins = ["tests.environment.fixtures"]

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
