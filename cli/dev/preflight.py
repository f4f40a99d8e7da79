"""Checks before ``tracedq dev`` starts anything: free ports, a reachable broker. Each problem is one sentence."""

from __future__ import annotations

import errno
import logging
import socket

import pika

from cli.dev.config import DevConfig

__all__ = ["broker_problem", "port_problems"]


def port_problems(config: DevConfig) -> list[str]:
    """Why each port of ``config`` cannot be used (empty when all are free)."""
    problems = []
    by_port: dict[int, list[str]] = {}
    for name, port in config.ports.items():
        by_port.setdefault(port, []).append(name)
    for port, names in by_port.items():
        if len(names) > 1:
            problems.append(f"port {port} is given to {' and '.join(names)}: each needs its own")
            continue
        reason = _bind_error(port)
        if reason is not None:
            problems.append(f"port {port} ({names[0]}) is not free on 127.0.0.1: {reason}; pass --{names[0]}-port")
    return problems


def _bind_error(port: int) -> str | None:
    # SO_REUSEADDR, as the servers set it: a socket in TIME_WAIT is no conflict, a listening one is.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            return "another process listens there" if exc.errno == errno.EADDRINUSE else str(exc)
    return None


def broker_problem(broker_url: str) -> str | None:
    """Why RabbitMQ at ``broker_url`` cannot be used, or None when a connection opens."""
    parameters = pika.URLParameters(broker_url)
    parameters.connection_attempts, parameters.socket_timeout = 1, 3
    shown = _without_password(broker_url)
    logging.getLogger("pika").setLevel(logging.CRITICAL)  # the answer below says it once, without a traceback
    try:
        pika.BlockingConnection(parameters).close()
    except pika.exceptions.AMQPConnectionError as exc:
        detail = "; ".join(arg if isinstance(arg, str) else repr(arg) for arg in exc.args) or type(exc).__name__
        if "ConnectionClosedByBroker" in detail or isinstance(exc, pika.exceptions.ConnectionClosedByBroker):
            # It answered: wrong credentials, a vhost that does not exist, no permission on it.
            return f"RabbitMQ at {shown} refused the connection ({detail}): check the user, password and vhost"
        return f"RabbitMQ is unreachable at {shown} ({detail}): start it, or set BROKER_URL / --broker"
    return None


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
