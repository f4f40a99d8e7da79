"""Shared fixtures for the end-to-end flow tests: PostgreSQL, a real SMTP server, RabbitMQ, worker processes.

Loaded by the flow test modules with ``pytest_plugins = ["tests.environment.fixtures"]``.

- ``flow_database``: a dedicated PostgreSQL database (``tracedq_flows``, created when missing) with every
  table dropped and created again for each test. Skipped when PostgreSQL is down, failed on CI.
- ``smtp_server``: an aiosmtpd server on loopback that keeps every delivered message.
- ``flow_queues``: the queues the order and user actors use, purged at the start of the test.
- ``flow_sender``: a traced RabbitMQ broker in this process that publishes to an actor *by name* (see
  :class:`FlowSender`): the test process never imports ``actors``' global broker.
- ``start_flow_worker``: ``dramatiq --skip-logging actors -p 1 -t 4`` subprocesses wired to all of the above
  through their environment only, exactly as deployed, exporting spans over OTLP to ``otlp_receiver``.
  Every process group started is SIGKILLed at teardown.

PYTEST_DONT_REWRITE: the test modules import helpers from here before ``pytest_plugins`` loads it, so
pytest could not rewrite it anyway; the helpers' assertions carry their own messages.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dramatiq
import pika
import pytest
from aiosmtpd.controller import Controller
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from observability import Tracing, install
from services.model import Base
from services.unit_of_work import create_schema
from tests.conftest import RABBITMQ_URL, ci_requires_services, require_rabbitmq
from tests.environment.polling import wait_until
from tests.environment.processes import PROJECT_ROOT, ServiceProcess, dramatiq_argv
from tests.environment.receiver import OtlpReceiver, ReceivedSpan

__all__ = [
    "DATABASE_NAME",
    "FLOW_QUEUES",
    "PROJECT_ROOT",
    "FlowEnv",
    "FlowSender",
    "FlowWorker",
    "SmtpServer",
    "flow_database",
    "flow_env",
    "flow_queues",
    "flow_sender",
    "hex_ids",
    "own_postgres_database",
    "smtp_server",
    "start_flow_worker",
    "wait_until",
]

PG_HOST = os.environ.get("TEST_POSTGRES_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_POSTGRES_PORT", "5432"))
PG_USER = os.environ.get("TEST_POSTGRES_USER", "postgres")
DATABASE_NAME = "tracedq_flows"
_ADMIN_URL = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"

#: Every queue the order and user flows touch, with their delay and dead-letter queues.
FLOW_QUEUES = tuple(
    name for base in ("orders", "inventory", "users", "email") for name in (base, f"{base}.DQ", f"{base}.XQ")
)

SERVICE_NAME = "tracedq-flows-test"


def hex_ids(span: Any) -> tuple[str, str]:
    """(trace id, span id) of an SDK span in this process, as the hex the OTLP receiver reports."""
    context = span.get_span_context()
    assert context is not None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


# -- isolation -------------------------------------------------------------------------------------------
#
# The actors' queue names are fixed, and other workers (other test runs, other engineers' workers) on the same
# RabbitMQ would compete for these messages. Where ``rabbitmqctl`` works (a local server), each pytest
# session gets its own virtual host, deleted at the end; elsewhere (a CI service container) the default one.
# The database is ``tracedq_flows`` with the same per-session suffix, for the same reason.


@dataclass(frozen=True)
class FlowEnv:
    """Where this session's flows run: the broker URL (own vhost when possible) and the database."""

    broker_url: str
    database_name: str

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.database_name}"

    def connect(self) -> pika.BlockingConnection:
        parameters = pika.URLParameters(self.broker_url)
        parameters.connection_attempts = 1
        parameters.socket_timeout = 3
        parameters.blocked_connection_timeout = 3
        return pika.BlockingConnection(parameters)

    def purge(self, queues: Iterable[str]) -> None:
        """Empty each queue that exists (a missing queue has nothing to purge)."""
        connection = self.connect()
        try:
            for queue in queues:
                channel = connection.channel()
                try:
                    channel.queue_purge(queue)
                    channel.close()
                except pika.exceptions.ChannelClosedByBroker as exc:
                    if exc.reply_code != 404:
                        raise
        finally:
            connection.close()

    def _declare_passive(self, queue: str) -> Any:
        connection = self.connect()
        try:
            return connection.channel().queue_declare(queue, passive=True).method
        finally:
            connection.close()

    def ready_count(self, queue: str) -> int:
        """Messages ready in ``queue`` (not counting those delivered and unacked)."""
        return int(self._declare_passive(queue).message_count)

    def consumer_count(self, queue: str) -> int:
        """Consumers subscribed to ``queue``."""
        return int(self._declare_passive(queue).consumer_count)


def _rabbitmqctl(*args: str) -> bool:
    try:
        done = subprocess.run(["rabbitmqctl", *args], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.fixture(scope="session")
def flow_env() -> Iterator[FlowEnv]:
    require_rabbitmq()
    suffix = uuid.uuid4().hex[:8]
    vhost = f"tracedq_flows_{suffix}"
    own_vhost = shutil.which("rabbitmqctl") is not None and _rabbitmqctl("add_vhost", vhost)
    if own_vhost and _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"):
        broker_url = RABBITMQ_URL.rstrip("/") + "/" + vhost
    else:
        if own_vhost:
            _rabbitmqctl("delete_vhost", vhost)
        own_vhost = False
        broker_url = RABBITMQ_URL
    env = FlowEnv(broker_url=broker_url, database_name=f"{DATABASE_NAME}_{suffix}")
    try:
        yield env
    finally:
        if own_vhost:
            _rabbitmqctl("delete_vhost", vhost)
        _drop_database(env.database_name)


@pytest.fixture
def flow_queues(flow_env: FlowEnv) -> Iterator[tuple[str, ...]]:
    """The flows' queues, purged before the test (and after it, so nothing is left for the next run)."""
    require_rabbitmq()
    flow_env.purge(FLOW_QUEUES)
    yield FLOW_QUEUES
    flow_env.purge(FLOW_QUEUES)


class FlowSender:
    """Publishes to an actor by name through a traced broker of this process, as a producer service would.

    ``dramatiq.Message(queue_name=..., actor_name=...)`` handed to ``broker.enqueue`` needs no actor
    declared here: the worker looks the actor up by name. ``Tracing`` wraps ``enqueue`` when a queue is
    declared, so every queue is declared (on the server too) before the first publish, and each publish
    gets its ``send <queue>`` PRODUCER span here, in the session's in-memory exporter.

    The broker is ``actors.rabbitmq.Broker``, the class the workers use, so the queues it declares get the
    same arguments as theirs.
    """

    def __init__(self, broker_url: str) -> None:
        from actors.rabbitmq import Broker

        self.broker = Broker(url=broker_url, confirm_delivery=True)
        install(self.broker, Tracing())

    def declare(self, queue: str) -> None:
        """Declare ``queue`` (with its delay and dead-letter queues) on the server."""
        self.broker.declare_queue(queue, ensure=True)

    def send(self, queue: str, actor_name: str, *args: Any) -> dramatiq.Message[Any]:
        self.declare(queue)
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=queue, actor_name=actor_name, args=args, kwargs={}, options={}
        )
        return self.broker.enqueue(message)

    def close(self) -> None:
        self.broker.close()


@pytest.fixture
def flow_sender(
    flow_env: FlowEnv, flow_queues: tuple[str, ...], span_exporter: InMemorySpanExporter
) -> Iterator[FlowSender]:
    sender = FlowSender(flow_env.broker_url)
    try:
        yield sender
    finally:
        sender.close()


# -- PostgreSQL -------------------------------------------------------------------------------------------


def _admin_engine() -> Engine:
    return create_engine(_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})


def _require_postgres(database_name: str) -> None:
    """Create ``database_name`` when missing; skip when PostgreSQL is down (fail on CI)."""
    try:
        engine = _admin_engine()
        try:
            with engine.connect() as connection:
                exists = connection.scalar(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": database_name}
                )
                if not exists:
                    connection.execute(text(f'CREATE DATABASE "{database_name}"'))
        finally:
            engine.dispose()
    except Exception as exc:
        message = f"PostgreSQL unreachable at {PG_HOST}:{PG_PORT} as {PG_USER}: {exc!r}"
        if ci_requires_services():
            pytest.fail(f"PostgreSQL is required on CI: {message}")
        pytest.skip(message)


def _drop_database(database_name: str) -> None:
    with contextlib.suppress(Exception):
        engine = _admin_engine()
        try:
            with engine.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)'))
        finally:
            engine.dispose()


@pytest.fixture
def flow_database(flow_env: FlowEnv) -> Iterator[Engine]:
    """An engine on this session's database with every table dropped and created afresh."""
    _require_postgres(flow_env.database_name)
    engine = create_engine(flow_env.database_url, connect_args={"connect_timeout": 5})
    Base.metadata.drop_all(engine)
    create_schema(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@contextlib.contextmanager
def own_postgres_database(prefix: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database ``<prefix>_<random>``, dropped afterwards (skip/fail as above)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    _require_postgres(name)
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        _drop_database(name)


def session(engine: Engine) -> Session:
    return sessionmaker(engine, expire_on_commit=False)()


# -- SMTP -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    """One message the SMTP server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return "" if part is None else str(part.get_content())


class SmtpServer:
    """aiosmtpd on 127.0.0.1 that keeps every message it accepts."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = _free_port()
        self._lock = threading.Condition()
        self._messages: list[Delivered] = []
        self.controller = Controller(self, hostname=self.host, port=self.port)

    async def handle_DATA(self, server: Any, smtp_session: Any, envelope: Any) -> str:  # noqa: N802  (aiosmtpd hook)
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode()
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self._messages.append(Delivered(envelope.mail_from, list(envelope.rcpt_tos), parsed))
            self._lock.notify_all()
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[Delivered]:
        with self._lock:
            return list(self._messages)

    def wait_for(self, predicate: Callable[[list[Delivered]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(list(self._messages)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.1))
            return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.controller.start()
    try:
        yield server
    finally:
        server.controller.stop()


# -- worker processes -------------------------------------------------------------------------------------

_INHERITED_OUT = ("OTEL_", "LOG_", "TRACE_", "SMTP_", "dramatiq_")
_SETTINGS = ("BROKER_URL", "DATABASE_URL", "REDIS_URL", "EMAIL_RATE_LIMIT")


class FlowWorker(ServiceProcess):
    """``dramatiq --skip-logging actors -p 1 -t 4`` for the flow tests (``module``: another app to run)."""

    def __init__(self, env: dict[str, str], log_dir: Path, module: str = "actors") -> None:
        argv = dramatiq_argv(processes=1, threads=4, module=module)
        super().__init__(argv, env, log_dir, name=f"worker-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def start_flow_worker(
    flow_env: FlowEnv,
    flow_queues: tuple[str, ...],
    flow_database: Engine,
    smtp_server: SmtpServer,
    otlp_receiver: OtlpReceiver,
    tmp_path: Path,
) -> Iterator[Callable[..., FlowWorker]]:
    """Start a worker on demand (extra keyword arguments are environment variables; ``module`` the app, ``actors``
    by default); all killed at teardown."""
    workers: list[FlowWorker] = []

    def start(module: str = "actors", **extra_env: str) -> FlowWorker:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(_INHERITED_OUT) and key not in _SETTINGS
        }
        env.update(
            BROKER_URL=flow_env.broker_url,
            DATABASE_URL=flow_env.database_url,
            SMTP_HOST=smtp_server.host,
            SMTP_PORT=str(smtp_server.port),
            LOG_FORMAT="json",
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_SERVICE_NAME=SERVICE_NAME,
            OTEL_BSP_SCHEDULE_DELAY="200",
            # No health endpoint: its default 0.0.0.0:9200 would clash with any other worker on this machine.
            HEALTH_PORT="0",
            WORKER_HEARTBEAT_DIR=str(tmp_path / "heartbeats"),
        )
        env.update(extra_env)
        worker = FlowWorker(env, tmp_path, module)
        workers.append(worker)
        return worker.start()

    try:
        yield start
    finally:
        for worker in workers:
            worker.kill()


# -- span trees -------------------------------------------------------------------------------------------


def only(spans: Iterable[ReceivedSpan], name: str, trace_id: str | None = None) -> ReceivedSpan:
    """The single span called ``name`` (in ``trace_id`` when given); fails when there are none or several."""
    found = [s for s in spans if s.name == name and (trace_id is None or s.trace_id == trace_id)]
    assert len(found) == 1, f"expected one {name!r}, got {len(found)} among {sorted(s.name for s in spans)}"
    return found[0]


def children(spans: Iterable[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_span_id == parent.span_id and s.trace_id == parent.trace_id]


def child(spans: Iterable[ReceivedSpan], parent: ReceivedSpan, name: str) -> ReceivedSpan:
    """The single direct child of ``parent`` called ``name``."""
    found = [s for s in children(spans, parent) if s.name == name]
    assert len(found) == 1, (
        f"expected one {name!r} under {parent.name!r}, got {sorted(s.name for s in children(spans, parent))}"
    )
    return found[0]
