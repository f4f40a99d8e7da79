"""A real worker started on an EMPTY database consumes nothing and says why until ``python -m actors.db upgrade``.

Before the schema gate, such a worker took every message, failed it on ``relation "users" does not exist`` and
retried it for a quarter of an hour while its readiness said the database was ok. Here: its consumers never
subscribe (the messages stay ready in RabbitMQ), readiness answers 503 naming the revision the code needs;
after the upgrade it becomes ready and each waiting message takes effect exactly once (rows and mails counted).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import create_engine, func, inspect, select

from services.model import ProcessedMessage, User
from services.schema import head_revision
from tests.environment.database import own_postgres_database
from tests.environment.polling import wait_until
from tests.environment.ports import free_port
from tests.environment.processes import PROJECT_ROOT, ServiceProcess
from tests.environment.sender import FlowSender
from tests.environment.smtp import SmtpServer
from tests.environment.stack import Stack

pytestmark = pytest.mark.rabbitmq

USERS = 5
WAIT = 60.0


def _ready(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return None  # the endpoint's fork is not listening yet


def _events(worker: ServiceProcess, event: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    return [record for record in records if record.get("event") == event]


@pytest.mark.timeout(180)
def test_a_worker_on_an_empty_database_waits_for_the_upgrade_then_processes_each_message_once(
    flow_env: Stack,
    flow_sender: FlowSender,
    smtp_server: SmtpServer,
    start_flow_worker: Callable[..., ServiceProcess],
) -> None:
    head = head_revision()
    port = free_port()
    with own_postgres_database("tracedq_schema_gate") as database_url:
        worker = start_flow_worker(DATABASE_URL=database_url, HEALTH_HOST="127.0.0.1", HEALTH_PORT=str(port))
        assert wait_until(lambda: _events(worker, "worker_waiting_for_schema"), WAIT), worker.describe()
        assert wait_until(lambda: _ready(port) is not None and _ready(port)[1].get("workers") == 1, WAIT), (
            worker.describe()
        )
        assert _ready(port) == (
            503,
            {"broker": "ok", "database": f"schema behind (at none, code needs {head})", "workers": 1},
        )

        for number in range(USERS):
            payload = {"user_id": f"gate-{number}", "email": f"gate{number}@example.com", "name": f"Gate {number}"}
            flow_sender.send("users", "register_user", payload)
        # The gate paused the consumer threads before their first consume: nothing subscribed, nothing taken.
        assert (flow_env.ready_count("users"), flow_env.consumer_count("users")) == (USERS, 0)
        flow_sender.declare("email")  # the worker declares a queue when it first consumes from it
        assert (flow_env.ready_count("email"), flow_env.consumer_count("email")) == (0, 0)
        engine = create_engine(database_url)
        try:
            assert inspect(engine).get_table_names() == []

            upgrade = subprocess.run(
                [sys.executable, "-m", "actors.db", "upgrade"],
                cwd=PROJECT_ROOT,
                env={**os.environ, "DATABASE_URL": database_url, "BROKER_URL": "memory://"},
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert upgrade.returncode == 0, upgrade.stderr
            assert upgrade.stdout.splitlines()[-1].startswith(f"schema upgraded from none to {head} at "), upgrade

            assert smtp_server.wait_for(lambda delivered: len(delivered) >= USERS, WAIT), worker.describe()
            assert wait_until(lambda: flow_env.ready_count("users") == 0, WAIT), worker.describe()
            assert _ready(port) == (200, {"broker": "ok", "database": "ok", "workers": 1})

            with engine.connect() as connection:
                users = connection.scalars(select(User.id).order_by(User.id)).all()
                ledger = connection.scalar(select(func.count()).select_from(ProcessedMessage))
        finally:
            engine.dispose()
    assert users == [f"gate-{number}" for number in range(USERS)]
    assert ledger == 2 * USERS  # one register step and one welcome mail per user, each once
    assert sorted(to for mail in smtp_server.messages for to in mail.rcpt_tos) == [
        f"gate{number}@example.com" for number in range(USERS)
    ]
    assert (flow_env.ready_count("users.XQ"), flow_env.ready_count("email.XQ")) == (0, 0)
    waiting = _events(worker, "worker_waiting_for_schema")
    assert [record["reason"] for record in waiting] == [f"schema behind (at none, code needs {head})"], waiting
    assert len(_events(worker, "worker_schema_ready")) == 1, worker.describe()
    assert "does not exist" not in worker.output(), worker.describe()  # no actor ever ran against the empty database
    assert "Context impl" not in worker.output()  # Alembic's chatter on each revision read stays out of the logs
