"""The servers the tests use (RabbitMQ, Redis, PostgreSQL): where they are, and what a test does when one is down.

Locally a missing server skips the test; on CI (``CI=true``) it fails it, so that a broken service container
never passes as a green run of skipped tests. Every check that can skip goes through :func:`unavailable`.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

__all__ = [
    "PG_HOST",
    "PG_PORT",
    "PG_USER",
    "RABBITMQ_URL",
    "REDIS_URL",
    "ci_requires_services",
    "require_rabbitmq",
    "require_rabbitmqctl",
    "require_redis",
    "unavailable",
]

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_HOST = os.environ.get("TEST_POSTGRES_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_POSTGRES_PORT", "5432"))
PG_USER = os.environ.get("TEST_POSTGRES_USER", "postgres")


def ci_requires_services() -> bool:
    """On CI a missing server is a failure, never a skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str, *, on_ci: str | None = None) -> NoReturn:
    """Skip the test for ``reason``; on CI fail it instead, saying ``on_ci`` (``reason`` when not given)."""
    if ci_requires_services():
        pytest.fail(on_ci or reason)
    pytest.skip(reason)


def require_rabbitmq(url: str = RABBITMQ_URL) -> None:
    """Skip when RabbitMQ is down locally; fail on CI, where it must be up."""
    import pika

    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except Exception as exc:
        unavailable(
            f"RabbitMQ unreachable at {url}", on_ci=f"RabbitMQ is required on CI and unreachable at {url}: {exc!r}"
        )


def require_rabbitmqctl(purpose: str) -> None:
    """Skip when ``rabbitmqctl`` is not on PATH (fail on CI): ``purpose`` says what the test needs it for."""
    if shutil.which("rabbitmqctl") is None:
        unavailable(f"rabbitmqctl not found: cannot {purpose}", on_ci=f"rabbitmqctl is required on CI to {purpose}")


def require_redis(url: str = REDIS_URL) -> None:
    """Skip when Redis is down locally; fail on CI, where it must be up."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        unavailable(f"Redis unreachable at {url}", on_ci=f"Redis is required on CI and unreachable at {url}: {exc!r}")
