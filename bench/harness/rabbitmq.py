"""RabbitMQ for the benchmarks: a vhost of their own, queues deleted around a run, the server's version.

RabbitMQ runs use a vhost created and deleted with ``rabbitmqctl`` so queues of other test runs on the same
server are never touched; pika is imported only where a function needs it.
"""

from __future__ import annotations

import subprocess
import urllib.parse
from collections.abc import Callable, Iterable

__all__ = ["DEFAULT_AMQP_URL", "close_vhost", "delete_queues", "open_vhost", "rabbitmq_version"]

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def delete_queues(amqp_url: str, names: Iterable[str]) -> None:
    """Delete queues (a missing one is fine)."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        for name in names:
            channel.queue_delete(name)
    finally:
        connection.close()


def rabbitmq_version(amqp_url: str) -> str:
    """The server's version from the connection handshake, or ``unreachable (...)``."""
    import pika

    try:
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    except Exception as exc:  # a report without the version beats no report
        return f"unreachable ({type(exc).__name__})"
    try:
        version = connection._impl.server_properties.get("version", b"?")  # pika keeps them on the impl only
        return version.decode() if isinstance(version, bytes) else str(version)
    finally:
        connection.close()


def _rabbitmqctl(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", "-q", *argv], capture_output=True, text=True, timeout=60, check=False)


def open_vhost(name: str, log: Callable[[str], None]) -> str | None:
    """Create ``name`` with full rights for guest and return its URL; None (said through ``log``) when rabbitmqctl
    is missing or refuses."""
    try:
        added = _rabbitmqctl("add_vhost", name)
        if added.returncode != 0 and "already" not in added.stdout + added.stderr:
            log(f"rabbitmqctl add_vhost {name} failed: {added.stderr.strip() or added.stdout.strip()}")
            return None
        if _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*").returncode != 0:
            return None
    except (OSError, subprocess.TimeoutExpired) as exc:
        log(f"no rabbitmqctl ({type(exc).__name__})")
        return None
    base = urllib.parse.urlsplit(DEFAULT_AMQP_URL)
    return urllib.parse.urlunsplit(base._replace(path="/" + urllib.parse.quote(name, safe="")))


def close_vhost(name: str) -> None:
    """Delete the vhost and everything in it."""
    _rabbitmqctl("delete_vhost", name)
