"""The servers of one test environment: a RabbitMQ vhost and a PostgreSQL database of its own.

``own_stack(prefix)`` is the one builder both the integration and the fault suites use (through the fixtures
of tests/environment/fixtures.py): a vhost ``<prefix>_<random>`` and a database of the same name, both
deleted afterwards. The database is created when a test first needs it (``create``), so a test that only
talks to RabbitMQ runs without PostgreSQL.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine

from tests.environment.database import create_database, drop_database, postgres_url
from tests.environment.vhost import VhostProbe, own_vhost

__all__ = ["Stack", "own_stack"]


@dataclass(frozen=True)
class Stack(VhostProbe):
    """A test's vhost (broker URL, queue counts, connections) and its PostgreSQL database."""

    socket_timeout = 3.0
    blocked_connection_timeout = 3.0

    database_name: str

    @property
    def database_url(self) -> str:
        return postgres_url(self.database_name)

    def database_url_via(self, port: int) -> str:
        """The database's URL through ``port`` of the PostgreSQL host (a proxy's port, say)."""
        return postgres_url(self.database_name, port)

    def create_database(self) -> None:
        """Create the database when missing; skip when PostgreSQL is down (fail on CI)."""
        create_database(self.database_name)

    @functools.cached_property
    def engine(self) -> Engine:
        """An engine on the database (straight to PostgreSQL), disposed when the stack goes."""
        return create_engine(self.database_url, connect_args={"connect_timeout": 5})


@contextlib.contextmanager
def own_stack(prefix: str, *, vhost_required: bool = True) -> Iterator[Stack]:
    """A vhost and a database named ``<prefix>_<random>``, deleted afterwards.

    ``vhost_required=False`` falls back to the default vhost where ``rabbitmqctl`` cannot make one
    (tests/environment/vhost.py); a test that injects faults with ``rabbitmqctl`` needs its own.
    """
    with own_vhost(prefix, required=vhost_required) as vhost:
        stack = Stack(vhost=vhost, database_name=f"{prefix}_{uuid.uuid4().hex[:8]}")
        try:
            yield stack
        finally:
            if "engine" in stack.__dict__:
                stack.engine.dispose()
            drop_database(stack.database_name)
