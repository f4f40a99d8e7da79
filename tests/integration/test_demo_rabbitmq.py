"""``tracedq demo --broker amqp://...``: the demo flows through real RabbitMQ and a real worker process.

Each run gets a vhost of its own, standing in for the user's broker: a message already in ``orders.XQ`` must
be there, untouched, afterwards, and the demo must leave no message of its own, no temporary folder and no
process behind, also when interrupted with Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.environment.polling import wait_until
from tests.environment.processes import PROJECT_ROOT
from tests.environment.vhost import VhostProbe, own_vhost

pytestmark = pytest.mark.rabbitmq

FOREIGN = {
    "queue_name": "orders",
    "actor_name": "place_order",
    "args": [{"order_id": "theirs"}],
    "kwargs": {},
    "options": {},
    "message_id": str(uuid.uuid4()),
    "message_timestamp": 1_700_000_000_000,
}


@pytest.fixture
def users_broker() -> Iterator[VhostProbe]:
    """A vhost whose ``orders.XQ`` already holds one dead letter that is not the demo's."""
    with own_vhost("tracedq_demo") as vhost:
        probe = VhostProbe(vhost)
        from messaging.broker import TracedqBroker

        broker = TracedqBroker(url=probe.broker_url, confirm_delivery=True)  # the workers' queue arguments
        try:
            broker.declare_queue("orders", ensure=True)
        finally:
            broker.close()
        connection = probe.connect()
        try:
            connection.channel().basic_publish("", "orders.XQ", json.dumps(FOREIGN).encode())
        finally:
            connection.close()
        yield probe


def _demo(probe: VhostProbe, tmp_path: Path, *extra: str) -> list[str]:
    (tmp_path / "tmp").mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "cli.main", "demo", "--broker", probe.broker_url, *extra]
    return [*argv, "--spans-file", str(tmp_path / "s.jsonl")]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "OTEL_TRACES_EXPORTER": "none", "TMPDIR": str(tmp_path / "tmp")}


def _left_in_vhost(probe: VhostProbe) -> tuple[dict[str, int], list[bytes]]:
    """Every non-empty queue's depth, and the bodies in orders.XQ (fetched and put back)."""
    depths = {name: count for name, count in probe.depths().items() if count}
    connection = probe.connect()
    bodies = []
    try:
        channel = connection.channel()
        while True:
            method, _properties, body = channel.basic_get("orders.XQ", auto_ack=False)
            if method is None:
                break
            bodies.append(body)
    finally:
        connection.close()  # unacked: back in the queue
    return depths, bodies


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line or environment names ``text`` (the demo's temporary folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if text.encode() in (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.timeout(180)
def test_demo_against_rabbitmq_draws_spans_from_both_processes_and_leaves_nothing(
    users_broker: VhostProbe, tmp_path: Path
) -> None:
    """Five traces; the worker's spans join the CLI's; no library chatter; the user's dead letter stays."""
    result = subprocess.run(
        _demo(users_broker, tmp_path),
        cwd=PROJECT_ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert out.count("\ntrace ") + out.startswith("trace ") == 5
    assert "ERROR EmailUnavailable: SMTP 421" in out and "outcome=retrying retries=0" in out
    assert "outcome=success retries=1" in out  # the retried email, processed by the worker process
    assert "outcome=dead_lettered retries=0 dead_letter_reason=throws" in out
    assert "reserve inventory" in out and "send welcome email" in out  # service spans from the worker
    assert "4 emails delivered to the demo SMTP sink; 1 message(s) the demo left in RabbitMQ deleted" in out
    assert "[tracedq-worker]" in out and "[tracedq-demo]" in out  # the trace crosses processes
    chatter = [line for line in out.splitlines() if line.startswith("{")]
    assert chatter == [], chatter[:5]  # pika's and aiosmtpd's INFO lines (about 70 of them before)
    assert result.stderr == ""

    assert _left_in_vhost(users_broker) == ({"orders.XQ": 1}, [json.dumps(FOREIGN).encode()])
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.timeout(180)
def test_ctrl_c_stops_the_worker_and_cleans_up(users_broker: VhostProbe, tmp_path: Path) -> None:
    """SIGINT as soon as the worker process exists (the flows cannot be done yet): nothing of the demo is left."""
    demo = subprocess.Popen(
        _demo(users_broker, tmp_path),
        cwd=PROJECT_ROOT,
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:

        def worker_started() -> bool:
            return any(_processes_mentioning(f"{path}/demo.db") for path in (tmp_path / "tmp").glob("tracedq-demo-*"))

        assert wait_until(worker_started, 60, interval=0.01)
        (workdir,) = (tmp_path / "tmp").glob("tracedq-demo-*")
        demo.send_signal(signal.SIGINT)
        _, stderr = demo.communicate(timeout=90)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    assert (demo.returncode, stderr.decode().splitlines()[-1:]) == (1, ["Aborted!"])
    assert list((tmp_path / "tmp").iterdir()) == []
    assert _processes_mentioning(str(workdir)) == []
    assert _left_in_vhost(users_broker) == ({"orders.XQ": 1}, [json.dumps(FOREIGN).encode()])
