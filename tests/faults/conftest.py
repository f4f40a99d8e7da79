"""Shared fixtures of the fault suite (issue 7): real processes attacked on a vhost and a database of their own.

Every fault test runs the real ``dramatiq --skip-logging actors`` worker (and, where it needs one, the real
``uvicorn api.main:app``) as subprocesses configured only through their environment, as deployed, against:

- ``fault_env``: a RabbitMQ virtual host created for the test with ``rabbitmqctl`` and deleted after it, so the
  test can purge, count and force-close connections without touching anyone else's queues on this shared
  server; and a PostgreSQL database for the session (``tracedq_faults_<suffix>``) whose tables are dropped and
  created again for each test. Without ``rabbitmqctl`` (it injects the faults) or a server, the test is skipped
  locally and fails on CI (``tests.conftest.ci_requires_services``).
- ``otlp_receiver``: the in-test OTLP/HTTP receiver the processes export their spans to (real protobuf).
- ``smtp_server``: an aiosmtpd server on loopback keeping every email (the order flow ends in one).
- ``fault_sender``: a traced RabbitMQ broker of this process publishing to an actor by name (with confirms).
- ``start_worker`` / ``start_api``: start those processes on demand; every process group started is SIGKILLed
  at teardown, whatever happened.

Loopback only: the worker tree's health endpoint (``HEALTH_PORT``, 0.0.0.0:9200 by default) is switched off and
the heartbeat files go to the test's ``tmp_path``.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine, create_engine, func, select

from services.model import Base, Order, Product
from services.unit_of_work import create_schema
from tests.api_support import KEY
from tests.environment.fixtures import (
    PG_HOST,
    PG_PORT,
    PG_USER,
    FlowSender,
    SmtpServer,
    _drop_database,
    _require_postgres,
    session,
    wait_until,
)
from tests.environment.processes import ServiceProcess, dramatiq_argv
from tests.environment.receiver import OtlpReceiver, ReceivedSpan
from tests.environment.vhost import VhostProbe, own_vhost
from tests.environment.worker import worker_environment

__all__ = [
    "FLOW_QUEUES",
    "FaultEnv",
    "FaultProcess",
    "order_payloads",
    "placed_ids",
    "process_spans",
    "seed_stock",
    "settled_count",
]

#: The order and user flows' queues with their delay and dead-letter queues.
FLOW_QUEUES = tuple(
    name for base in ("orders", "inventory", "users", "email") for name in (base, f"{base}.DQ", f"{base}.XQ")
)
UVICORN = Path(sys.prefix) / "bin" / "uvicorn"


# -- rabbitmqctl -------------------------------------------------------------------------------------------


def rabbitmqctl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``rabbitmqctl`` (as root on the test machine; each call costs about a second of Erlang start-up)."""
    return subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout, check=False)


@dataclass(frozen=True)
class FaultEnv(VhostProbe):
    """This test's vhost and database, plus the ways to inspect and attack them."""

    socket_timeout = 3.0
    blocked_connection_timeout = 3.0

    database_url: str
    engine: Engine

    def connection_count(self) -> int:
        """Client connections open on the vhost right now."""
        done = rabbitmqctl("list_connections", "-p", self.vhost, "pid", "--formatter", "json", "--quiet")
        assert done.returncode == 0, done.stderr
        return len(json.loads(done.stdout or "[]"))

    def close_all_connections(self, explanation: str) -> int:
        """Force-close every client connection of this vhost only (``close_all_connections -p``); returns how many."""
        done = rabbitmqctl("close_all_connections", "-p", self.vhost, explanation)
        assert done.returncode == 0, done.stderr
        closed = re.search(r"Closed (\d+) connections", done.stdout)
        assert closed is not None, done.stdout
        return int(closed.group(1))


@pytest.fixture(scope="session")
def _fault_database_name() -> Iterator[str]:
    """One PostgreSQL database for the session's fault tests, dropped at the end."""
    name = f"tracedq_faults_{uuid.uuid4().hex[:8]}"
    yield name
    _drop_database(name)


@pytest.fixture
def fault_env(_fault_database_name: str) -> Iterator[FaultEnv]:
    """A fresh RabbitMQ vhost (deleted after the test) and the session's database with empty tables."""
    _require_postgres(_fault_database_name)
    with own_vhost("tracedq_faults") as vhost:
        database_url = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{_fault_database_name}"
        engine = create_engine(database_url, connect_args={"connect_timeout": 5})
        try:
            Base.metadata.drop_all(engine)
            create_schema(engine)
            yield FaultEnv(vhost, database_url, engine)
        finally:
            engine.dispose()


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP receiver on an ephemeral 127.0.0.1 port, stopped after the test."""
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """aiosmtpd on 127.0.0.1 that keeps every message it accepts."""
    server = SmtpServer()
    server.controller.start()
    try:
        yield server
    finally:
        server.controller.stop()


@pytest.fixture
def fault_sender(fault_env: FaultEnv, span_exporter: InMemorySpanExporter) -> Iterator[FlowSender]:
    """Publishes to an actor by name on the test's vhost, with confirms (``send`` returns once RabbitMQ has it)."""
    sender = FlowSender(fault_env.broker_url)
    try:
        yield sender
    finally:
        sender.close()


# -- processes ---------------------------------------------------------------------------------------------


class FaultProcess(ServiceProcess):
    """A worker tree or API process of a fault test (``service`` is its ``OTEL_SERVICE_NAME``).

    ``base_url`` is where an API process listens ("" for a worker).
    """

    def __init__(self, argv: list[str], env: dict[str, str], log_dir: Path, name: str, base_url: str = "") -> None:
        super().__init__(argv, env, log_dir, name=name)
        self.service = env["OTEL_SERVICE_NAME"]
        self.base_url = base_url

    def spans(self, receiver: OtlpReceiver) -> list[ReceivedSpan]:
        """The spans this process exported so far."""
        return [span for span in receiver.spans if span.resource.get("service.name") == self.service]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def process_env(
    fault_env: FaultEnv, smtp_server: SmtpServer, otlp_receiver: OtlpReceiver, tmp_path: Path
) -> Callable[..., dict[str, str]]:
    """``process_env(service_name, **extra)``: the environment of a worker or API process of this test."""

    def build(service_name: str, **extra: str) -> dict[str, str]:
        return worker_environment(
            fault_env,
            database_url=fault_env.database_url,
            otlp_endpoint=otlp_receiver.endpoint,
            service_name=service_name,
            state_dir=tmp_path,
            SMTP_HOST=smtp_server.host,
            SMTP_PORT=str(smtp_server.port),
            EMAIL_RATE_LIMIT="100000",  # emails are not what the fault tests are about
            **extra,
        )

    return build


@pytest.fixture
def start_worker(process_env: Callable[..., dict[str, str]], tmp_path: Path) -> Iterator[Callable[..., FaultProcess]]:
    """``start_worker(name, processes=1, threads=4, **env)``: a ``dramatiq actors`` tree, killed at teardown.

    ``name`` becomes the worker's ``OTEL_SERVICE_NAME`` (``tracedq-fault-<name>``), so the spans of two workers
    of one test can be told apart at the receiver.
    """
    started: list[FaultProcess] = []

    def start(name: str = "worker", *, processes: int = 1, threads: int = 4, **extra_env: str) -> FaultProcess:
        env = process_env(f"tracedq-fault-{name}", **extra_env)
        worker = FaultProcess(dramatiq_argv(processes=processes, threads=threads), env, tmp_path, name)
        started.append(worker)
        worker.start()
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.kill()


@pytest.fixture
def start_api(process_env: Callable[..., dict[str, str]], tmp_path: Path) -> Iterator[Callable[..., FaultProcess]]:
    """``start_api(**env)``: ``uvicorn api.main:app`` on a free 127.0.0.1 port, live when returned; killed at teardown.

    Requests go to the process's ``base_url``.
    """
    started: list[FaultProcess] = []

    def start(**extra_env: str) -> FaultProcess:
        port = _free_port()
        argv = [str(UVICORN), "api.main:app", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
        env = process_env("tracedq-fault-api", **{"API_KEYS": KEY, **extra_env})
        api = FaultProcess(argv, env, tmp_path, f"api-{len(started)}", base_url=f"http://127.0.0.1:{port}")
        started.append(api)
        api.start()

        def live() -> bool:
            assert api.running, api.describe()
            try:
                return httpx.get(f"{api.base_url}/health/live", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        assert wait_until(live, 60, interval=0.2), api.describe()
        return api

    try:
        yield start
    finally:
        for api in started:
            api.kill()


# -- the order flow ----------------------------------------------------------------------------------------


def order_payloads(count: int, prefix: str, *, scarce_sku: str | None = None) -> list[dict[str, Any]]:
    """``count`` distinct orders of SKU-A (1-3 each); with ``scarce_sku`` every order also wants one of that."""
    orders = []
    for index in range(count):
        lines = [{"sku": "SKU-A", "quantity": index % 3 + 1}]
        if scarce_sku is not None:
            lines.append({"sku": scarce_sku, "quantity": 1})
        orders.append({"order_id": f"{prefix}-{index}", "customer_email": f"c{index}@example.com", "lines": lines})
    return orders


def seed_stock(engine: Engine, stock: dict[str, int]) -> None:
    with session(engine) as db:
        for sku, quantity in stock.items():
            db.add(Product(sku=sku, name=sku, stock=quantity))
        db.commit()


def placed_ids(engine: Engine) -> set[str]:
    """Ids of the orders in the database: the effect of ``place_order``."""
    with session(engine) as db:
        return set(db.scalars(select(Order.id)))


def settled_count(engine: Engine) -> int:
    """Orders past ``pending``: the effect of ``reserve_inventory``."""
    with session(engine) as db:
        return int(db.scalar(select(func.count()).select_from(Order).where(Order.status != "pending")) or 0)


def process_spans(spans: Iterable[ReceivedSpan], queue: str) -> list[ReceivedSpan]:
    """The ``process <queue>`` spans among ``spans``."""
    return [span for span in spans if span.name == f"process {queue}"]
