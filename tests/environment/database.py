"""A database of a test's own: a PostgreSQL database created and dropped by name, or a migrated SQLite file.

Other people run tests on the same PostgreSQL at the same time, so each environment gets a database with a unique
name (``CREATE DATABASE``), dropped afterwards. PostgreSQL down skips the test locally and fails it on CI
(tests/environment/servers.py).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from services.model import Base
from services.unit_of_work import create_schema, make_engine
from tests.environment.servers import PG_HOST, PG_PORT, PG_USER, unavailable

__all__ = [
    "create_database",
    "drop_database",
    "fresh_schema",
    "migrated_sqlite_url",
    "own_postgres_database",
    "postgres_url",
    "session",
]

_ADMIN_URL = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"


def postgres_url(database_name: str, port: int = PG_PORT) -> str:
    """The SQLAlchemy URL of ``database_name``, on ``port`` of the PostgreSQL host (a proxy's port, say)."""
    return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{port}/{database_name}"


def _admin_engine() -> Engine:
    return create_engine(_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})


def create_database(database_name: str) -> None:
    """Create ``database_name`` when missing; skip when PostgreSQL is down (fail on CI)."""
    try:
        engine = _admin_engine()
        try:
            with engine.connect() as connection:
                exists = connection.scalar(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": database_name}
                )
                if not exists:
                    connection.execute(text(f'CREATE DATABASE "{database_name}"'))
        finally:
            engine.dispose()
    except Exception as exc:
        message = f"PostgreSQL unreachable at {PG_HOST}:{PG_PORT} as {PG_USER}: {exc!r}"
        unavailable(message, on_ci=f"PostgreSQL is required on CI: {message}")


def drop_database(database_name: str) -> None:
    """Drop ``database_name`` and every connection to it; nothing happens when that fails."""
    with contextlib.suppress(Exception):
        engine = _admin_engine()
        try:
            with engine.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)'))
        finally:
            engine.dispose()


@contextlib.contextmanager
def own_postgres_database(prefix: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database ``<prefix>_<random>``, dropped afterwards (skip/fail as above)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    create_database(name)
    try:
        yield postgres_url(name)
    finally:
        drop_database(name)


def fresh_schema(engine: Engine) -> None:
    """Drop every table of the models and create the schema again: empty tables at the head revision."""
    Base.metadata.drop_all(engine)
    create_schema(engine)


def session(engine: Engine) -> Session:
    """A session on ``engine`` whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)()


def migrated_sqlite_url(path: Path) -> str:
    """The URL of a SQLite database at ``path`` with the schema at head: a worker or the API starts on it at once."""
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    try:
        create_schema(engine)
    finally:
        engine.dispose()
    return url
