"""What tests of the producer API share: a key and its header, and a fresh in-memory SQLite database for accepted
orders (a SQLite file for an API process: ``tests.environment.database.migrated_sqlite_url``)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from api.auth import ApiKeys
from services.unit_of_work import SqlUnitOfWork, create_schema, make_session_factory

__all__ = ["AUTH", "KEY", "OLD_KEY", "api_keys", "sqlite_uow"]

KEY = "test-key-0123456789abcdef0123456789abcdef"
OLD_KEY = "old-key-0123456789abcdef0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


def api_keys() -> ApiKeys:
    """The keys the test apps accept: ``KEY`` and ``OLD_KEY`` (a rotation in progress)."""
    return ApiKeys.of(KEY, OLD_KEY)


def sqlite_uow() -> Callable[[], SqlUnitOfWork]:
    """Units of work on a new in-memory SQLite database with the schema (one connection, shared by threads)."""
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    create_schema(engine)
    factory = make_session_factory(engine)
    return lambda: SqlUnitOfWork(factory)
