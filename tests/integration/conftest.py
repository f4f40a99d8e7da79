"""The end-to-end flow tests' environment: one stack (vhost and database) for the session, emptied for each test.

Built with tests/environment/ as the fault suite's is (tests/faults/conftest.py); the shared fixtures
(``otlp_receiver``, ``smtp_server``) are in tests/environment/fixtures.py.

- ``flow_env``: this session's ``Stack``: its own vhost where ``rabbitmqctl`` works (the default one elsewhere, as
  with a RabbitMQ in a container) and the database ``tracedq_flows_<random>``, both deleted at the end.
- ``flow_database``: an engine on it with every table dropped and created again for the test (PostgreSQL down:
  skipped, failed on CI). ``flow_queues``: the order and user flows' queues, purged before and after the test.
- ``flow_sender``: a traced RabbitMQ broker in this process that publishes to an actor *by name*
  (tests/environment/sender.py): the test process never imports ``actors``' global broker.
- ``start_flow_worker``: ``dramatiq --skip-logging actors -p 1 -t 4`` subprocesses wired to all of the above
  through their environment only, exporting spans over OTLP to ``otlp_receiver``; killed at teardown.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine

from otlp_receiver import OtlpReceiver
from tests.environment.database import fresh_schema
from tests.environment.processes import ServiceProcess
from tests.environment.sender import FlowSender
from tests.environment.servers import require_rabbitmq
from tests.environment.smtp import SmtpServer
from tests.environment.stack import Stack, own_stack
from tests.environment.worker import Workers, dramatiq_argv
from tests.order_flow import FLOW_QUEUES

#: The ``OTEL_SERVICE_NAME`` of the flow tests' workers.
FLOW_SERVICE_NAME = "tracedq-flows-test"


# -- the flow tests: one stack for the session --------------------------------------------------------------
#
# The actors' queue names are fixed, and other workers (other test runs, other engineers' workers) on the same
# RabbitMQ would compete for these messages: the session gets a vhost of its own where rabbitmqctl works.


@pytest.fixture(scope="session")
def flow_env() -> Iterator[Stack]:
    """This session's stack for the flows: the broker URL (own vhost when possible) and the database."""
    with own_stack("tracedq_flows", vhost_required=False) as stack:
        yield stack


@pytest.fixture
def flow_queues(flow_env: Stack) -> Iterator[tuple[str, ...]]:
    """The flows' queues, purged before the test (and after it, so nothing is left for the next run)."""
    require_rabbitmq()
    flow_env.purge(FLOW_QUEUES)
    yield FLOW_QUEUES
    flow_env.purge(FLOW_QUEUES)


@pytest.fixture
def flow_database(flow_env: Stack) -> Engine:
    """An engine on this session's database with every table dropped and created afresh."""
    flow_env.create_database()
    fresh_schema(flow_env.engine)
    return flow_env.engine


@pytest.fixture
def flow_sender(
    flow_env: Stack, flow_queues: tuple[str, ...], span_exporter: InMemorySpanExporter
) -> Iterator[FlowSender]:
    """Publishes to an actor by name on the session's vhost, with confirms."""
    with FlowSender(flow_env.broker_url) as sender:
        yield sender


@pytest.fixture
def start_flow_worker(
    flow_env: Stack,
    flow_queues: tuple[str, ...],
    flow_database: Engine,
    smtp_server: SmtpServer,
    otlp_receiver: OtlpReceiver,
    tmp_path: Path,
) -> Iterator[Callable[..., ServiceProcess]]:
    """``start_flow_worker(module="actors", **env)``: ``dramatiq --skip-logging <module> -p 1 -t 4`` on the flows'
    stack (extra keyword arguments are environment variables); all killed at teardown."""
    workers = Workers.on(flow_env, smtp_server, otlp_receiver, tmp_path)

    def start(module: str = "actors", **extra_env: str) -> ServiceProcess:
        argv = dramatiq_argv(processes=1, threads=4, module=module)
        return workers.start(argv, name=f"worker-{uuid.uuid4().hex[:8]}", service_name=FLOW_SERVICE_NAME, **extra_env)

    try:
        yield start
    finally:
        workers.kill()
