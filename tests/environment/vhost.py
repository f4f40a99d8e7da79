"""A RabbitMQ virtual host of a test's own: tests on one server at the same time never share a queue.

``own_vhost`` creates it (``rabbitmqctl add_vhost``) and deletes it afterwards; ``VhostProbe`` is the vhost as
a test sees it: its broker URL, raw connections, its queues' counts, and its connections to count or cut.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import pika

from tests.environment.rabbitmqctl import rabbitmqctl
from tests.environment.servers import RABBITMQ_URL, require_rabbitmq, require_rabbitmqctl, unavailable

__all__ = ["DEFAULT_VHOST", "VhostProbe", "own_vhost"]

#: ``own_vhost(..., required=False)`` yields this when it cannot make a vhost: the server's default one.
DEFAULT_VHOST = ""


@contextmanager
def own_vhost(prefix: str, *, required: bool = True) -> Iterator[str]:
    """A fresh vhost ``<prefix>_<random>`` with full permissions for the test user, deleted afterwards.

    Skips when RabbitMQ is down. Without ``rabbitmqctl`` (or when it fails) a ``required`` vhost skips the test
    too, and with ``CI=true`` either is a failure instead; a vhost that is not ``required`` falls back to the
    server's default vhost (``DEFAULT_VHOST``), as with a RabbitMQ in a container that ``rabbitmqctl`` cannot reach.
    """
    require_rabbitmq()
    if required:
        require_rabbitmqctl("create a vhost of the test's own")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    failure = _add_vhost(name)
    if failure is not None:
        if required:
            unavailable(
                f"cannot create a vhost with rabbitmqctl: {failure}", on_ci=f"cannot create a vhost on CI: {failure}"
            )
        yield DEFAULT_VHOST
        return
    try:
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)


def _add_vhost(name: str) -> Exception | None:
    """Create ``name`` with full permissions for the test user; what went wrong, if anything (nothing left then)."""
    user = pika.URLParameters(RABBITMQ_URL).credentials.username
    try:
        rabbitmqctl("add_vhost", name)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        return exc
    try:
        rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        with contextlib.suppress(OSError, RuntimeError, subprocess.TimeoutExpired):
            rabbitmqctl("delete_vhost", name)
        return exc
    return None


@dataclass(frozen=True)
class VhostProbe:
    """A vhost seen from a test: its broker URL, raw connections, its queues' counts and its connections."""

    vhost: str
    #: Seconds a raw connection waits on a silent socket, and on a blocked one (RabbitMQ's resource alarms).
    socket_timeout: ClassVar[float] = 5
    blocked_connection_timeout: ClassVar[float] = 30

    @property
    def broker_url(self) -> str:
        return RABBITMQ_URL if self.vhost == DEFAULT_VHOST else RABBITMQ_URL.rstrip("/") + "/" + self.vhost

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
        """Consumers subscribed to ``queue``."""
        return int(self._declare_passive(queue).consumer_count)

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

    def delete(self, *, queues: Iterable[str] = (), exchanges: Iterable[str] = ()) -> None:
        """Delete each of ``queues`` and ``exchanges`` (deleting a missing one is no error)."""
        connection = self.connect()
        try:
            channel = connection.channel()
            for queue in queues:
                channel.queue_delete(queue)
            for exchange in exchanges:
                channel.exchange_delete(exchange)
        finally:
            connection.close()

    def take_all(self, queue: str) -> list[bytes]:
        """Every message body ready in ``queue``, taken off it (``basic_get`` with auto-ack until it is empty)."""
        connection = self.connect()
        bodies = []
        try:
            channel = connection.channel()
            while True:
                method, _properties, body = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    return bodies
                bodies.append(body)
        finally:
            connection.close()

    def depths(self) -> dict[str, int]:
        """Every queue of the vhost -> its messages, ready **and** unacknowledged (``rabbitmqctl list_queues``)."""
        out = rabbitmqctl("list_queues", "-p", self._name, "name", "messages", "--formatter", "json", "--quiet")
        return {row["name"]: int(row["messages"]) for row in json.loads(out or "[]")}

    def connection_count(self) -> int:
        """Client connections open on the vhost right now."""
        out = rabbitmqctl("list_connections", "-p", self._name, "pid", "--formatter", "json", "--quiet", timeout=30)
        return len(json.loads(out or "[]"))

    def close_all_connections(self, explanation: str) -> int:
        """Force-close every client connection of this vhost only (``close_all_connections -p``); returns how many."""
        out = rabbitmqctl("close_all_connections", "-p", self._name, explanation, timeout=30)
        closed = re.search(r"Closed (\d+) connections", out)
        assert closed is not None, out
        return int(closed.group(1))

    @property
    def _name(self) -> str:
        return self.vhost or "/"

    def _declare_passive(self, queue: str) -> Any:
        connection = self.connect()
        try:
            return connection.channel().queue_declare(queue, passive=True).method
        finally:
            connection.close()
