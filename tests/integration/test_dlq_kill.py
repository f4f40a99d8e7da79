"""``tracedq dlq replay`` SIGKILLed mid-way on a real RabbitMQ: no dead letter is lost, then a rerun finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pika
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from tests.environment.polling import wait_until
from tests.environment.servers import RABBITMQ_URL, require_rabbitmq
from tests.environment.vhost import DEFAULT_VHOST, VhostProbe

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(180)]
#: The server's default vhost, where this module's queues live.
SERVER = VhostProbe(DEFAULT_VHOST)

#: Enough that the replay (fetch everything, then publish one by one with confirms) can be caught mid-way.
COUNT = 2000
ROOT = Path(__file__).resolve().parents[2]


def _depth(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> int:
    return int(channel.queue_declare(queue, passive=True).method.message_count)


def _depths(queue: str) -> tuple[int, int]:
    """Ready messages in ``queue`` and in ``queue.XQ``."""
    connection = SERVER.connect()
    try:
        channel = connection.channel()
        return _depth(channel, queue), _depth(channel, f"{queue}.XQ")
    finally:
        connection.close()


def _message_ids(queue: str) -> list[str]:
    """The message ids of every ready message in ``queue``, left in place (nacked back on close)."""
    connection = SERVER.connect()
    try:
        channel = connection.channel()
        ids: list[str] = []
        while True:
            method, _properties, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                return ids
            ids.append(json.loads(body)["message_id"])
    finally:
        connection.close()  # unacked: every message goes back


def _replay(queue: str, *, keep_stdout: bool = True) -> subprocess.Popen[bytes]:
    """``tracedq dlq replay <queue> --all`` in a child process (stdout is one line per message)."""
    env = {**os.environ, "BROKER_URL": RABBITMQ_URL, "OTEL_TRACES_EXPORTER": "none", "COLUMNS": "300"}
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dlq", "replay", queue, "--all", "--broker", RABBITMQ_URL],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE if keep_stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture
def dead_letters() -> Iterator[tuple[str, list[str]]]:
    """A unique queue declared by Dramatiq (with ``.DQ`` and ``.XQ``) and ``COUNT`` dead letters in its XQ."""
    require_rabbitmq()
    name = f"dlqkill_{uuid.uuid4().hex[:12]}"
    broker = RabbitmqBroker(url=RABBITMQ_URL, middleware=[])
    try:
        broker.declare_queue(name, ensure=True)
    finally:
        broker.close()
    try:
        ids = []
        connection = SERVER.connect()
        try:
            channel = connection.channel()
            for i in range(COUNT):
                message = dramatiq.Message(
                    queue_name=name, actor_name=f"work_{name}", args=(i,), kwargs={}, options={"retries": 0}
                )
                ids.append(message.message_id)
                channel.basic_publish("", f"{name}.XQ", message.encode(), pika.BasicProperties(delivery_mode=2))
        finally:
            connection.close()
        assert wait_until(lambda: _depths(name) == (0, COUNT), 30, interval=0.01)
        yield name, ids
    finally:
        SERVER.delete(queues=(name, f"{name}.DQ", f"{name}.XQ"))


def test_sigkill_mid_replay_loses_nothing_and_a_rerun_finishes(dead_letters: tuple[str, list[str]]) -> None:
    name, ids = dead_letters

    process = _replay(name, keep_stdout=False)
    try:
        connection = SERVER.connect()
        try:
            channel = connection.channel()
            deadline = time.monotonic() + 60
            while _depth(channel, name) == 0:
                assert process.poll() is None, f"replay ended before any copy was seen: {process.communicate()}"
                assert time.monotonic() < deadline, "replay published nothing within 60 s"
                time.sleep(0.002)
        finally:
            connection.close()
    finally:
        _kill(process)
    assert process.returncode == -signal.SIGKILL, "replay finished before the kill: raise COUNT"

    # The dead connection returns every unacked XQ copy: all messages are ready again in one queue or the other.
    assert wait_until(lambda: sum(_depths(name)) >= COUNT, 30, interval=0.01)
    replayed, left = _message_ids(name), _message_ids(f"{name}.XQ")
    assert replayed, "killed before the first replayed copy landed"
    assert left, "replay finished before the kill: raise COUNT"
    assert set(replayed) | set(left) == set(ids)  # none lost
    assert set(replayed) <= set(ids) and set(left) <= set(ids)
    assert max(Counter(replayed).values()) == 1 and max(Counter(left).values()) == 1
    # Duplicates only for copies published (and confirmed) whose XQ ack never reached RabbitMQ.
    duplicates = set(replayed) & set(left)
    assert len(duplicates) <= 10, f"{len(duplicates)} messages in both queues"
    assert len(replayed) + len(left) == COUNT + len(duplicates)

    rerun = _replay(name)
    try:
        stdout, stderr = rerun.communicate(timeout=120)
    finally:
        _kill(rerun)
    assert rerun.returncode == 0, (stdout.decode()[-2000:], stderr.decode()[-2000:])
    assert f"replayed {len(left)} of {len(left)}".encode() in stdout
    assert _depths(name)[1] == 0
    final = _message_ids(name)
    assert set(final) == set(ids)
    assert len(final) == COUNT + len(duplicates)
