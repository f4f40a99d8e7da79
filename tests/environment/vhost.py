"""A RabbitMQ virtual host of a test's own: tests on one server at the same time never share a queue."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import pika
import pytest

from tests.conftest import RABBITMQ_URL, ci_requires_services, require_rabbitmq


def rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl``; its stdout, or RuntimeError naming the command and its stderr."""
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


@contextmanager
def own_vhost(prefix: str) -> Iterator[str]:
    """A fresh vhost ``<prefix>_<random>`` with full permissions for the test user, deleted afterwards.

    Skips when RabbitMQ or ``rabbitmqctl`` is missing; with ``CI=true`` that is a failure instead.
    """
    require_rabbitmq()
    if shutil.which("rabbitmqctl") is None:
        if ci_requires_services():
            pytest.fail("rabbitmqctl is required on CI to create a vhost of the test's own")
        pytest.skip("rabbitmqctl not found: cannot create a vhost of our own")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    user = pika.URLParameters(RABBITMQ_URL).credentials.username
    try:
        rabbitmqctl("add_vhost", name)
        rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        if ci_requires_services():
            pytest.fail(f"cannot create a vhost with rabbitmqctl on CI: {exc}")
        pytest.skip(f"cannot create a vhost with rabbitmqctl: {exc}")
    try:
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)


@dataclass(frozen=True)
class VhostProbe:
    """A vhost seen from a test: its broker URL, raw connections, and its queues' counts."""

    vhost: str
    #: Seconds a raw connection waits on a silent socket, and on a blocked one (RabbitMQ's resource alarms).
    socket_timeout: ClassVar[float] = 5
    blocked_connection_timeout: ClassVar[float] = 30

    @property
    def broker_url(self) -> str:
        return RABBITMQ_URL.rstrip("/") + "/" + self.vhost

    def connect(self) -> pika.BlockingConnection:
        parameters = pika.URLParameters(self.broker_url)
        parameters.connection_attempts = 1
        parameters.socket_timeout = self.socket_timeout
        parameters.blocked_connection_timeout = self.blocked_connection_timeout
        return pika.BlockingConnection(parameters)

    def ready_count(self, queue: str) -> int:
        """Messages ready in ``queue`` (a passive declare: fast, but delivered-and-unacked ones are not counted)."""
        return int(self._declare_passive(queue).message_count)

    def consumer_count(self, queue: str) -> int:
        return int(self._declare_passive(queue).consumer_count)

    def depths(self) -> dict[str, int]:
        """Every queue of the vhost -> its messages, ready **and** unacknowledged (``rabbitmqctl list_queues``)."""
        out = rabbitmqctl("list_queues", "-p", self.vhost, "name", "messages", "--formatter", "json", "--quiet")
        return {row["name"]: int(row["messages"]) for row in json.loads(out or "[]")}

    def _declare_passive(self, queue: str) -> Any:
        connection = self.connect()
        try:
            return connection.channel().queue_declare(queue, passive=True).method
        finally:
            connection.close()
