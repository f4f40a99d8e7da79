"""A real ``periodiq actors`` scheduler against RabbitMQ, exporting over OTLP/HTTP to an in-test receiver.

The scheduler runs with a span-export delay longer than the test, so the only way its spans can reach
the receiver is the flush its SIGTERM handler does (``actors.ticks``). periodiq sends every actor whose
cron matches the current minute as soon as it starts, so the every-minute tick goes out within seconds:
no waiting for the next minute.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from otlp_receiver import OtlpReceiver
from tests.environment.processes import ServiceProcess
from tests.environment.servers import RABBITMQ_URL, require_rabbitmq
from tests.environment.vhost import DEFAULT_VHOST, VhostProbe
from tests.environment.worker import worker_environment

pytestmark = pytest.mark.rabbitmq
#: The server's default vhost, where this module's queues live.
SERVER = VhostProbe(DEFAULT_VHOST)

QUEUE = "schedules"
SERVICE_NAME = "tracedq-scheduler-test"
PERIODIQ = Path(sys.prefix) / "bin" / "periodiq"
TICK_SPAN = "tick release_expired_reservations"
SEND_SPAN = f"send {QUEUE}"


def _purge() -> None:
    connection = SERVER.connect()
    try:
        with contextlib.suppress(pika.exceptions.ChannelClosedByBroker):  # no queue yet: nothing to purge
            connection.channel().queue_purge(QUEUE)
    finally:
        connection.close()


def _ready_count() -> int:
    connection = SERVER.connect()
    try:
        return int(connection.channel().queue_declare(QUEUE, passive=True).method.message_count)
    except pika.exceptions.ChannelClosedByBroker:
        return 0  # the scheduler declares the queue on its first send
    finally:
        connection.close()


def _take_messages() -> list[dict[str, Any]]:
    """Every message on the queue, acked and decoded (Dramatiq's JSON encoder)."""
    return [json.loads(body) for body in SERVER.take_all(QUEUE)]


@pytest.fixture
def scheduler(otlp_receiver: OtlpReceiver, tmp_path: Path) -> Iterator[ServiceProcess]:
    """``periodiq actors`` in its own session, output in files; killed at teardown whatever happens."""
    require_rabbitmq()
    _purge()
    env = worker_environment(
        broker_url=RABBITMQ_URL,
        database_url=f"sqlite:///{tmp_path / 'x.db'}",  # never opened: the scheduler only sends
        otlp_endpoint=otlp_receiver.endpoint,
        service_name=SERVICE_NAME,
        state_dir=tmp_path,
        OTEL_BSP_SCHEDULE_DELAY="600000",  # no periodic export: only the SIGTERM flush delivers spans
    )
    process = ServiceProcess([str(PERIODIQ), "actors"], env, tmp_path, name="periodiq").start()
    try:
        yield process
    finally:
        process.kill()
        _purge()


@pytest.mark.timeout(90)
def test_scheduler_flushes_tick_spans_on_sigterm(scheduler: ServiceProcess, otlp_receiver: OtlpReceiver) -> None:
    """The tick's root span and its send span reach the collector when the scheduler is stopped."""
    # periodiq sleeps to the next minute when started after :55, so allow a little over that.
    deadline = time.monotonic() + 30
    while _ready_count() < 1:
        assert scheduler.proc.poll() is None, scheduler.describe()
        assert time.monotonic() < deadline, f"no tick on {QUEUE!r} after 30 s; {scheduler.describe()}"
        time.sleep(0.25)
    assert otlp_receiver.spans == [], "spans arrived before the flush: the schedule delay was not honoured"

    scheduler.proc.send_signal(signal.SIGTERM)
    try:
        code = scheduler.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"periodiq still running 30 s after SIGTERM; {scheduler.describe()}")
    assert code == 0, scheduler.describe()
    # It published, so pika connected: its INFO connection lines are kept out of the scheduler's log.
    pika_lines = [line for line in scheduler.output().splitlines() if '"logger": "pika' in line]
    assert pika_lines == [], pika_lines

    # The flush is synchronous, before exit: everything is here already.
    assert otlp_receiver.wait_for(lambda spans: any(s.name == SEND_SPAN for s in spans), timeout=5), (
        scheduler.describe()
    )
    assert otlp_receiver.errors == []
    ticks = otlp_receiver.spans_named(TICK_SPAN)
    assert len(ticks) == 1, [s.name for s in otlp_receiver.spans]
    tick = ticks[0]
    assert tick.parent_span_id == ""
    assert tick.resource.get("service.name") == SERVICE_NAME
    assert tick.attributes["dramatiq.schedule.cron"] == "* * * * *"
    assert isinstance(tick.attributes["dramatiq.schedule.lateness_ms"], int)
    sends = [s for s in otlp_receiver.spans_named(SEND_SPAN) if s.trace_id == tick.trace_id]
    assert len(sends) == 1, otlp_receiver.spans
    send = sends[0]
    assert send.parent_span_id == tick.span_id
    assert send.attributes["messaging.system"] == "rabbitmq"

    # The span tree describes the message that is really on the queue, and that message carries the trace.
    messages = [m for m in _take_messages() if m["actor_name"] == "release_expired_reservations"]
    assert len(messages) == 1, messages
    message = messages[0]
    assert message["message_id"] == send.attributes["messaging.message.id"] == tick.attributes["messaging.message.id"]
    assert message["options"]["scheduled_at"] == tick.attributes["dramatiq.schedule.scheduled_at"]
    assert message["options"]["trace_context"]["traceparent"].split("-")[1:3] == [tick.trace_id, send.span_id]
