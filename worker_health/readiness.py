"""Readiness checks of the two dependencies every process needs: RabbitMQ and the database at schema head.

The worker tree's health endpoint (worker_health/health_server.py) and the API's ``/health/ready``
(api/main.py) ask the same questions the same way; each reports the answer in its own format.
"""

from __future__ import annotations

from typing import Any

__all__ = ["broker_reachable", "database_engine", "failure_text"]


def broker_reachable(url: str, timeout: float) -> None:
    """Open and close one connection to RabbitMQ at ``url``, one attempt, every wait bounded by ``timeout``.

    Raises:
        Exception: whatever pika raises when RabbitMQ does not answer or refuses the login.
    """
    import pika  # here, not at import: the health fork and the API import this module before they need it

    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.retry_delay = 0
    parameters.socket_timeout = timeout
    parameters.stack_timeout = timeout
    parameters.blocked_connection_timeout = timeout
    pika.BlockingConnection(parameters).close()


def database_engine(url: str, timeout: float) -> Any:
    """A SQLAlchemy engine for checks: no pool (a check every few seconds holds no connection) and a connect
    timeout of ``timeout`` seconds, so a database that does not answer fails the check instead of hanging it."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect_args["connect_timeout"] = max(1, int(timeout))
    elif url.startswith("sqlite"):
        connect_args["timeout"] = timeout
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


def failure_text(exc: BaseException) -> str:
    """``ExceptionType: message``, at most 300 characters: what a failed check reports."""
    return f"{type(exc).__name__}: {exc}"[:300]
