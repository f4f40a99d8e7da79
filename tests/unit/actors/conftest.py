"""The real ``actors`` package on its StubBroker (``BROKER_URL=memory://``) with test dependencies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.rate_limits.backends import StubBackend
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.orm import Session, sessionmaker

import actors
from actors import bootstrap
from services.model import Product
from services.unit_of_work import create_schema, make_engine, make_session_factory
from tests.fakes import FakeMailer


@pytest.fixture
def deps(tmp_path: Path) -> Iterator[bootstrap.Dependencies]:
    """SQLite with two products, a fake mailer, a generous email rate limit."""
    engine = make_engine(f"sqlite:///{tmp_path / 'actors.db'}")
    create_schema(engine)
    factory = make_session_factory(engine)
    with factory() as session:
        session.add_all([Product(sku="APPLE", name="Apple", stock=10), Product(sku="PEAR", name="Pear", stock=2)])
        session.commit()
    replacement = bootstrap.Dependencies(
        session_factory=factory,
        mailer=FakeMailer(),
        email_limiter=WindowRateLimiter(StubBackend(), "email-test", limit=1000, window=1),
    )
    bootstrap.override(replacement)
    yield replacement
    bootstrap.override(None)
    engine.dispose()


@pytest.fixture
def broker(span_exporter: InMemorySpanExporter) -> Iterator[StubBroker]:
    """The actors' own StubBroker, emptied after each test."""
    stub = actors.broker
    assert isinstance(stub, StubBroker)
    dramatiq.set_broker(stub)
    yield stub
    stub.flush_all()
    stub.dead_letters_by_queue.clear()


@pytest.fixture
def worker(broker: StubBroker) -> Iterator[dramatiq.Worker]:
    running = dramatiq.Worker(broker, worker_timeout=50, worker_threads=2)
    running.start()
    yield running
    running.stop()


def settle(broker: StubBroker, worker: dramatiq.Worker) -> None:
    """Wait until every queue of the flow is empty (each step enqueues the next)."""
    for _ in range(3):
        for queue in ("orders", "inventory", "users", "email"):
            broker.join(queue, fail_fast=False)
        worker.join()


def session(factory: sessionmaker[Session]) -> Session:
    return factory()
