"""The fault suite's environment (issue 7): real processes attacked on a vhost and a database of their own.

Built with tests/environment/ as the flow tests' is (tests/integration/conftest.py); the shared fixtures
(``otlp_receiver``, ``smtp_server``) are in tests/environment/fixtures.py. Every fault test runs the real
``dramatiq --skip-logging actors`` worker (and, where it needs one, the real ``uvicorn api.main:app``) as
subprocesses configured only through their environment, as deployed, against:

- ``fault_stack``: a ``Stack`` of the test's own: a RabbitMQ virtual host created with ``rabbitmqctl`` and deleted
  after it, so the test can purge, count and force-close connections without touching anyone else's queues on
  this shared server; and an empty PostgreSQL database, dropped after it. ``fault_env``: the same with the
  schema at head (empty tables). Without ``rabbitmqctl`` (it
  injects the faults) or a server, the test is skipped locally and fails on CI (tests/environment/servers.py).
- ``fault_sender``: a traced RabbitMQ broker of this process publishing to an actor by name (with confirms).
- ``start_worker`` / ``start_api``: start those processes on demand; every process group started is SIGKILLed
  at teardown, whatever happened.

Loopback only: the worker tree's health endpoint (``HEALTH_PORT``, 0.0.0.0:9200 by default) is switched off and
the heartbeat files go to the test's ``tmp_path``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otlp_receiver import OtlpReceiver
from tests.api_support import KEY
from tests.environment.api import api_argv, api_url, wait_until_live
from tests.environment.database import fresh_schema
from tests.environment.ports import free_port
from tests.environment.processes import ServiceProcess
from tests.environment.sender import FlowSender
from tests.environment.smtp import SmtpServer
from tests.environment.stack import Stack, own_stack
from tests.environment.worker import Workers, dramatiq_argv


@pytest.fixture
def fault_stack() -> Iterator[Stack]:
    """A fresh vhost and an empty database of this test's own; both deleted after the test."""
    with own_stack("tracedq_faults") as stack:
        stack.create_database()
        yield stack


@pytest.fixture
def fault_env(fault_stack: Stack) -> Stack:
    """``fault_stack`` with the schema at head and empty tables."""
    fresh_schema(fault_stack.engine)
    return fault_stack


@pytest.fixture
def fault_sender(fault_stack: Stack, span_exporter: InMemorySpanExporter) -> Iterator[FlowSender]:
    """Publishes to an actor by name on the test's vhost, with confirms (``send`` returns once RabbitMQ has it)."""
    with FlowSender(fault_stack.broker_url) as sender:
        yield sender


@pytest.fixture
def fault_processes(
    fault_env: Stack, smtp_server: SmtpServer, otlp_receiver: OtlpReceiver, tmp_path: Path
) -> Iterator[Workers]:
    """Starts the processes of a fault test; emails are not what these tests are about (no rate limit)."""
    workers = Workers.on(fault_env, smtp_server, otlp_receiver, tmp_path, EMAIL_RATE_LIMIT="100000")
    try:
        yield workers
    finally:
        workers.kill()


@pytest.fixture
def start_worker(fault_processes: Workers) -> Callable[..., ServiceProcess]:
    """``start_worker(name, processes=1, threads=4, **env)``: a ``dramatiq actors`` tree, killed at teardown.

    ``name`` becomes the worker's ``OTEL_SERVICE_NAME`` (``tracedq-fault-<name>``), so the spans of two workers
    of one test can be told apart at the receiver.
    """

    def start(name: str = "worker", *, processes: int = 1, threads: int = 4, **extra_env: str) -> ServiceProcess:
        argv = dramatiq_argv(processes=processes, threads=threads)
        return fault_processes.start(argv, name=name, service_name=f"tracedq-fault-{name}", **extra_env)

    return start


@pytest.fixture
def start_api(fault_processes: Workers) -> Callable[..., ServiceProcess]:
    """``start_api(**env)``: ``uvicorn api.main:app`` on a free 127.0.0.1 port, live when returned; killed at teardown.

    Requests go to the process's ``base_url``.
    """
    numbers = itertools.count()

    def start(**extra_env: str) -> ServiceProcess:
        port = free_port()
        api = fault_processes.start(
            api_argv(port, "--no-access-log"),
            name=f"api-{next(numbers)}",
            service_name="tracedq-fault-api",
            base_url=api_url(port),
            **{"API_KEYS": KEY, **extra_env},
        )
        wait_until_live(api, api.base_url)
        return api

    return start
