"""A real ``dramatiq`` worker process exporting over OTLP/HTTP to an in-test receiver.

The test process publishes through its own traced ``RabbitmqBroker`` (its spans go to the session's
in-memory exporter from ``tests/conftest.py``); the worker is ``dramatiq --skip-logging actors`` in a
subprocess, configured only through its environment, exactly as deployed. Its spans come back as real
OTLP protobuf to :class:`otlp_receiver.OtlpReceiver`.

Why a private broker rather than ``import actors``: ``tests/conftest.py`` sets ``BROKER_URL=memory://``
before anything imports ``actors``, and ``actors.broker`` builds its broker (and calls
``dramatiq.set_broker``) once per process at import. Importing it here would either get the StubBroker
or, if imported first, swap the global broker under the unit tests. A ``RabbitmqBroker`` built here, with
``observability.install`` and a ``greet`` actor declared with ``broker=`` on queue ``greetings``, sends the
same message the real actor sends and touches no global state.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from observability import Tracing, install
from otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.environment.database import migrated_sqlite_url
from tests.environment.processes import ServiceProcess
from tests.environment.servers import RABBITMQ_URL, require_rabbitmq
from tests.environment.vhost import DEFAULT_VHOST, VhostProbe
from tests.environment.worker import dramatiq_argv, worker_environment

pytestmark = pytest.mark.rabbitmq
#: The server's default vhost, where this module's queues live.
SERVER = VhostProbe(DEFAULT_VHOST)

BROKER_URL = RABBITMQ_URL
QUEUE = "greetings"
SERVICE_NAME = "tracedq-worker-test"

PROCESS_SPAN = f"process {QUEUE}"
SEND_SPAN = f"send {QUEUE}"
COMPOSE_SPAN = "compose greeting"


# -- RabbitMQ helpers --------------------------------------------------------------------------------


def _settled_ready_count(queue: str, timeout: float = 10.0) -> int:
    """The queue's ready count once two reads 0.5 s apart agree (unacked messages return on disconnect)."""
    deadline = time.monotonic() + timeout
    previous = SERVER.ready_count(queue)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        current = SERVER.ready_count(queue)
        if current == previous:
            return current
        previous = current
    return previous


@pytest.fixture(scope="module")
def rabbitmq() -> None:
    """Skip when RabbitMQ is down, except on CI where that is a failure."""
    require_rabbitmq(BROKER_URL)


# -- the producer side (this process) -----------------------------------------------------------------


def _greet(name: str, work_ms: int = 0) -> None:  # pragma: no cover - runs in the worker, never here
    raise AssertionError("the test process only sends")


@pytest.fixture
def greet_sender(rabbitmq: None, span_exporter: InMemorySpanExporter) -> Iterator[dramatiq.Actor[Any, Any]]:
    """A ``greet`` actor on queue ``greetings`` bound to a private traced RabbitmqBroker (see module doc)."""
    broker = RabbitmqBroker(url=BROKER_URL, confirm_delivery=True)
    install(broker, Tracing())
    actor: dramatiq.Actor[Any, Any] = dramatiq.actor(actor_name="greet", queue_name=QUEUE, broker=broker)(_greet)
    SERVER.purge([QUEUE])
    try:
        yield actor
    finally:
        broker.close()
        SERVER.purge([QUEUE])


# -- the worker process -------------------------------------------------------------------------------


class WorkerProcess(ServiceProcess):
    """``dramatiq --skip-logging actors -p 1 -t 2`` exporting to the in-test receiver."""

    def __init__(self, receiver: OtlpReceiver, log_dir: Path, extra_env: dict[str, str]) -> None:
        env = worker_environment(
            broker_url=BROKER_URL,
            database_url=migrated_sqlite_url(log_dir / "worker.db"),
            otlp_endpoint=receiver.endpoint,
            service_name=SERVICE_NAME,
            state_dir=log_dir,
            **extra_env,
        )
        super().__init__(dramatiq_argv(processes=1, threads=2), env, log_dir)


@pytest.fixture
def start_worker(rabbitmq: None, otlp_receiver: OtlpReceiver, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start the worker on demand; whatever happens, its process group is killed at teardown."""
    workers: list[WorkerProcess] = []

    def start(**extra_env: str) -> WorkerProcess:
        worker = WorkerProcess(otlp_receiver, tmp_path, extra_env)
        workers.append(worker)
        worker.start()
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.kill()


# -- assertions helpers -------------------------------------------------------------------------------


def _json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-blank line parsed as a JSON object; fails on the first line that is not one."""
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"worker log line is not JSON: {line!r}")
        assert isinstance(record, dict), line
        records.append(record)
    return records


def _wait_for_progress(receiver: OtlpReceiver, total: int, timeout: float) -> bool:
    """Wait until a process span arrives or the queue holds fewer than ``total`` ready messages."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if receiver.wait_for(lambda spans: any(span.name == PROCESS_SPAN for span in spans), timeout=0.25):
            return True
        if SERVER.ready_count(QUEUE) < total:
            return True
    return False


def _outcome(span: ReceivedSpan) -> Any:
    return span.attributes.get("dramatiq.message.outcome")


# -- tests --------------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_worker_exports_process_span_under_the_send_span(
    greet_sender: dramatiq.Actor[Any, Any],
    start_worker: Callable[..., WorkerProcess],
    otlp_receiver: OtlpReceiver,
    span_exporter: InMemorySpanExporter,
) -> None:
    # Log records go out over OTLP too; a 10 min batch delay means only the shutdown flush can send them.
    worker = start_worker(OTEL_LOGS_EXPORTER="otlp", OTEL_BLRP_SCHEDULE_DELAY="600000")
    message = greet_sender.send("Ada")

    sends = [span for span in span_exporter.get_finished_spans() if span.name == SEND_SPAN]
    assert len(sends) == 1, f"the publish was not traced: {[s.name for s in span_exporter.get_finished_spans()]}"
    send_context = sends[0].get_span_context()
    assert send_context is not None
    send_trace_id = format(send_context.trace_id, "032x")
    send_span_id = format(send_context.span_id, "016x")

    arrived = otlp_receiver.wait_for(
        lambda spans: {PROCESS_SPAN, COMPOSE_SPAN} <= {span.name for span in spans}, timeout=45
    )
    assert arrived, f"no worker spans after 45 s; {worker.describe()}"
    # A graceful stop flushes the worker's span queue: anything duplicated would have arrived by now.
    assert worker.terminate() == 0, worker.describe()
    assert otlp_receiver.errors == []

    processes = otlp_receiver.spans_named(PROCESS_SPAN)
    assert len(processes) == 1, processes
    process = processes[0]
    assert process.kind is SpanKind.CONSUMER
    assert process.trace_id == send_trace_id
    assert process.parent_span_id == send_span_id
    assert process.status_code is not StatusCode.ERROR
    assert process.resource.get("service.name") == SERVICE_NAME
    assert process.attributes["messaging.system"] == "rabbitmq"
    assert process.attributes["messaging.destination.name"] == QUEUE
    assert process.attributes["server.address"] == "127.0.0.1"  # from the broker's single URLParameters
    assert process.attributes["server.port"] == 5672
    assert process.attributes["messaging.message.id"] == message.message_id
    assert process.attributes["dramatiq.message.outcome"] == "success"

    composes = otlp_receiver.spans_named(COMPOSE_SPAN)
    assert len(composes) == 1, composes
    compose = composes[0]
    assert compose.kind is SpanKind.INTERNAL
    assert compose.trace_id == process.trace_id
    assert compose.parent_span_id == process.span_id
    assert compose.resource.get("service.name") == SERVICE_NAME

    records = _json_lines(worker.output())
    composed = [record for record in records if record.get("event") == "greeting_composed"]
    assert len(composed) == 1, records
    assert composed[0]["trace_id"] == process.trace_id
    assert composed[0]["span_id"] == compose.span_id
    assert composed[0]["message_id"] == message.message_id

    # The same line as an OTLP log record: what Loki stores, with the ids as native fields.
    exported = [record for record in otlp_receiver.logs if record.body == "greeting_composed"]
    assert len(exported) == 1, [record.body for record in otlp_receiver.logs]
    assert exported[0].trace_id == process.trace_id
    assert exported[0].span_id == compose.span_id
    assert exported[0].severity_text == "INFO"
    assert exported[0].attributes["message_id"] == message.message_id
    assert exported[0].resource.get("service.name") == SERVICE_NAME
    assert exported[0].resource.get("service.instance.id") == process.resource.get("service.instance.id")
    assert not {"event", "level", "timestamp", "trace_id", "_logger"} & set(exported[0].attributes)


@pytest.mark.timeout(120)
def test_sigterm_mid_load_loses_no_finished_span(
    greet_sender: dramatiq.Actor[Any, Any],
    start_worker: Callable[..., WorkerProcess],
    otlp_receiver: OtlpReceiver,
) -> None:
    total = 300
    for index in range(total):
        greet_sender.send(f"guest-{index}", work_ms=60)  # 9 s of work for 2 threads: room to stop mid-load
    assert SERVER.ready_count(QUEUE) == total

    # A schedule delay longer than the test: no periodic export, so every span that arrives was sent by
    # the flush on worker shutdown, which is what this test is about. gzip exercises the receiver's
    # decompression with the real exporter.
    worker = start_worker(OTEL_BSP_SCHEDULE_DELAY="600000", OTEL_EXPORTER_OTLP_COMPRESSION="gzip")
    assert _wait_for_progress(otlp_receiver, total, timeout=45), f"no progress in 45 s; {worker.describe()}"

    try:
        code = worker.terminate(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker still running 60 s after SIGTERM; {worker.describe()}")
    assert code == 0, worker.describe()

    finished = total - _settled_ready_count(QUEUE)
    assert 0 < finished < total, f"{finished} of {total} finished: the stop did not land mid-load"

    assert otlp_receiver.errors == []
    processes = otlp_receiver.spans_named(PROCESS_SPAN)
    outcomes = [_outcome(span) for span in processes]
    assert outcomes.count("success") == len(processes), outcomes
    message_ids = {span.attributes["messaging.message.id"] for span in processes}
    assert len(message_ids) == len(processes), "a message was processed twice"
    assert len(processes) == finished, f"{len(processes)} process spans for {finished} acked messages"
    assert all(span.resource.get("service.name") == SERVICE_NAME for span in processes)
    assert set(otlp_receiver.encodings) == {"gzip"}
    assert "Killing worker process" not in worker.output()
