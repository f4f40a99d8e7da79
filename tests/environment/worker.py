"""A RabbitMQ vhost and a PostgreSQL database of one fault test's own, and the worker environment wired to them.

Used by ``test_postgres_down.py`` and ``test_hostile_input.py`` through module-local fixtures. Other people run
tests on the same servers at the same time, so each test gets a vhost (``rabbitmqctl add_vhost``) and a
database (``CREATE DATABASE``) with a unique name, both deleted afterwards. Without a server or ``rabbitmqctl``
the test is skipped locally and fails on CI (``tests.conftest.ci_requires_services``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.environment.fixtures import PG_HOST, PG_PORT, PG_USER, _drop_database, _require_postgres
from tests.environment.processes import ServiceProcess
from tests.environment.vhost import VhostProbe, own_vhost

__all__ = ["IsolatedEnv", "child_pids", "isolated_env", "worker_environment"]

# Inherited variables that would point a worker somewhere else than this test's servers.
_INHERITED_OUT = ("OTEL_", "LOG_", "TRACE_", "SMTP_", "HEALTH_", "WORKER_", "dramatiq_")
_SETTINGS = ("BROKER_URL", "DATABASE_URL", "REDIS_URL", "EMAIL_RATE_LIMIT", "JAEGER_URL", "RABBITMQ_QUEUE_TYPE")


@dataclass(frozen=True)
class IsolatedEnv(VhostProbe):
    """The test's vhost and database."""

    database_name: str

    def database_url(self, port: int = PG_PORT) -> str:
        """The database's SQLAlchemy URL, on ``port`` of the PostgreSQL host (a proxy's port, say)."""
        return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{port}/{self.database_name}"


@contextlib.contextmanager
def isolated_env(prefix: str) -> Iterator[IsolatedEnv]:
    """Create ``<prefix>_<random>`` as a vhost (tests/environment/vhost.py) and as a database; drop both after."""
    with own_vhost(prefix) as name:
        _require_postgres(name)  # creates the database; skips (fails on CI) when PostgreSQL is down
        try:
            yield IsolatedEnv(vhost=name, database_name=name)
        finally:
            _drop_database(name)


def worker_environment(
    env: VhostProbe, *, database_url: str, otlp_endpoint: str, service_name: str, state_dir: Path, **extra: str
) -> dict[str, str]:
    """The environment of a ``dramatiq actors`` worker (or the API) on ``env``, exporting spans to ``otlp_endpoint``.

    Loopback only: the health endpoint (0.0.0.0:9200 by default) is off, heartbeats go under ``state_dir``.
    """
    variables = {
        key: value for key, value in os.environ.items() if not key.startswith(_INHERITED_OUT) and key not in _SETTINGS
    }
    variables.update(
        BROKER_URL=env.broker_url,
        DATABASE_URL=database_url,
        HEALTH_PORT="0",
        WORKER_HEARTBEAT_DIR=str(state_dir / "heartbeats"),
        LOG_FORMAT="json",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_SERVICE_NAME=service_name,
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    variables.update(extra)
    return variables


def child_pids(process: ServiceProcess) -> set[int]:
    """The live direct children of ``process`` (Dramatiq's worker processes), read from ``/proc/<pid>/stat``."""
    assert process.proc is not None
    parent = process.proc.pid
    children: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...
        if int(fields[1]) == parent and fields[0] != "Z":
            children.add(int(entry.name))
    return children
