"""SchemaGate on a StubBroker of its own and a real SQLite file: consumers paused until the schema is at head.

The gate is on the RabbitMQ broker only (``actors.broker``); its behaviour does not depend on the broker, so
a StubBroker and a real ``dramatiq.Worker`` show it here. The real worker process on RabbitMQ and PostgreSQL:
``tests/integration/test_worker_schema_gate.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from actors.broker import build_broker
from actors.settings import load_settings
from services.unit_of_work import create_schema, make_engine
from tests.environment.polling import wait_until
from worker_health.schema_gate import SchemaGate

WAIT = 30.0


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[tuple[StubBroker, SchemaGate, list[int], str]]:
    url = f"sqlite:///{tmp_path / 'gate.db'}"
    gate = SchemaGate(url, interval=0.05)
    broker = StubBroker(middleware=[gate])
    done: list[int] = []

    @dramatiq.actor(broker=broker, queue_name="gated")
    def work(number: int) -> None:
        done.append(number)

    work.send(1)
    work.send(2)
    yield broker, gate, done, url
    broker.close()


def test_consumers_wait_for_the_upgrade_then_take_each_message_once(
    gated: tuple[StubBroker, SchemaGate, list[int], str],
) -> None:
    broker, gate, done, url = gated
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        consumers = len(worker.consumers)
        assert consumers == 2  # gated and gated.DQ
        assert wait_until(lambda: len(gate._paused) == consumers, WAIT)
        assert not gate.open
        assert broker.queues["gated"].qsize() == 2  # both still queued: the paused consumers took none

        engine = make_engine(url)
        create_schema(engine)
        engine.dispose()

        assert wait_until(lambda: len(done) == 2, WAIT)
        broker.join("gated")
        worker.join()
        assert gate.open
        assert sorted(done) == [1, 2]
    finally:
        worker.stop()


def test_a_database_at_head_pauses_nothing(gated: tuple[StubBroker, SchemaGate, list[int], str]) -> None:
    broker, gate, done, url = gated
    engine = make_engine(url)
    create_schema(engine)
    engine.dispose()
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=1)
    worker.start()  # the first check runs before the boot: the gate is open before any consumer starts
    try:
        assert gate.open
        broker.join("gated")
        worker.join()
        assert sorted(done) == [1, 2]
        assert gate._paused == []
    finally:
        worker.stop()


def test_only_the_rabbitmq_broker_is_gated() -> None:
    """``memory://`` (unit tests, ``tracedq demo``) makes its own schema; the RabbitMQ broker waits for it."""
    stub = build_broker(load_settings({"BROKER_URL": "memory://"}))
    assert not any(isinstance(middleware, SchemaGate) for middleware in stub.middleware)
    rabbit = build_broker(load_settings({"BROKER_URL": "amqp://guest:guest@127.0.0.1:1/", "HEALTH_PORT": "0"}))
    try:
        gates = [middleware for middleware in rabbit.middleware if isinstance(middleware, SchemaGate)]
        assert [gate.database_url for gate in gates] == ["sqlite:///tracedq.db"]
    finally:
        rabbit.close()
