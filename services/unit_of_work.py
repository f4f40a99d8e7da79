"""A unit of work over a SQLAlchemy session: one transaction per business step, with its idempotency key.

The key is inserted in the same transaction as the effect. Two consumers racing on the same key both
try to insert it; the database's primary key lets one commit and makes the other fail with an
``IntegrityError``, which :meth:`SqlUnitOfWork.commit` reports as :class:`Duplicate`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from services.model import ProcessedMessage

__all__ = ["Duplicate", "SqlUnitOfWork", "create_schema", "make_engine", "make_session_factory"]


class Duplicate(Exception):
    """The step's idempotency key was already recorded: this delivery must change nothing."""


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (SQLite file or PostgreSQL), with SQLite set up for several worker threads."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: object, _record: object) -> None:
            cursor = connection.cursor()  # type: ignore[attr-defined]
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine`` that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def create_schema(engine: Engine) -> None:
    """Create the tables from the models and record the head migration (tests and the demo's fresh databases).

    Cheaper than running every migration, and leaves the database where ``python -m actors.db upgrade``
    would: at head, so readiness and the worker's schema gate accept it. Deployments run the upgrade.
    """
    from services.schema import create_all_at_head  # here: Alembic (11 MiB) only where a schema is made

    create_all_at_head(engine)


class SqlUnitOfWork:
    """``with uow:`` opens a session; ``commit()`` makes the step durable; leaving without it rolls back."""

    def __init__(self, session_factory: Callable[[], Session], clock: Callable[[], datetime] | None = None) -> None:
        self._session_factory = session_factory
        self.clock = clock or (lambda: datetime.now(UTC))
        self.session: Session

    def __enter__(self) -> Self:
        self.session = self._session_factory()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.session.rollback()
        self.session.close()

    def claim(self, key: str) -> None:
        """Record ``key`` in this transaction, or raise :class:`Duplicate` if a committed step has it."""
        if self.session.scalar(select(ProcessedMessage.key).where(ProcessedMessage.key == key)) is not None:
            raise Duplicate(key)
        self.session.add(ProcessedMessage(key=key, processed_at=self.clock()))
        try:
            # Flush now: a racing consumer's insert then blocks on (PostgreSQL) or conflicts with ours
            # here, before this step reads or locks anything else.
            self.session.flush()
        except IntegrityError as exc:
            self.session.rollback()
            raise Duplicate(key) from exc

    def commit(self) -> None:
        """Commit; a concurrent duplicate that won the race on the key surfaces as :class:`Duplicate`."""
        try:
            self.session.commit()
        except IntegrityError as exc:
            self.session.rollback()
            raise Duplicate(str(exc.orig)) from exc
