"""The schema's version: Alembic migrations in ``services/migrations``, and where a database stands against them.

One place answers "which revision is the database at, which does this code need": the API's readiness, the
worker tree's readiness and the worker's :class:`~worker_health.schema_gate.SchemaGate` all call
:func:`schema_status`. ``python -m actors.db upgrade`` calls :func:`upgrade`.

A database made by the ``create_all`` of the days before migrations (every table of the first revision, no
``alembic_version``) is adopted: :func:`upgrade` stamps it at the first revision, then upgrades it.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from services.model import Base

__all__ = [
    "BASELINE_REVISION",
    "BASELINE_TABLES",
    "SchemaBehind",
    "SchemaStatus",
    "create_all_at_head",
    "create_revision",
    "head_revision",
    "schema_status",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: The first revision: the schema as it was when migrations came in (``create_all`` made it before).
BASELINE_REVISION = "0001"
_UPGRADE_LOCK = 0x7472616365647100  # "tracedq\0": the advisory lock key of an upgrade on PostgreSQL
BASELINE_TABLES = frozenset({"products", "orders", "order_lines", "reservations", "users", "processed_messages"})


class SchemaBehind(Exception):
    """The database is not at the revision this code needs: run ``python -m actors.db upgrade``."""


@dataclass(frozen=True)
class SchemaStatus:
    """Where the database stands: ``current`` (``None`` when it has no revision) against the code's ``head``.

    ``behind`` is true when the database is empty or at an older revision of this code. A revision this code
    does not know is taken as newer (a release migrated ahead of the workers still running): not behind.
    """

    current: str | None
    head: str
    behind: bool

    def describe(self) -> str:
        """``ok``, or ``schema behind (at X, code needs Y)`` with X ``none`` for a database without a revision."""
        if not self.behind:
            return "ok"
        return f"schema behind (at {self.current or 'none'}, code needs {self.head})"

    def require_current(self) -> None:
        """Raise :class:`SchemaBehind` (with :meth:`describe`) when behind."""
        if self.behind:
            raise SchemaBehind(self.describe())


def _not_context_chatter(record: logging.LogRecord) -> bool:
    # Alembic logs these two lines each time it reads a revision: every readiness probe would repeat them.
    return not str(record.msg).startswith(("Context impl ", "Will assume "))


logging.getLogger("alembic.runtime.migration").addFilter(_not_context_chatter)


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS_DIR))


@functools.cache
def _known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in _scripts().walk_revisions())


def head_revision() -> str:
    """The revision this code needs."""
    head = _scripts().get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS_DIR}"
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def schema_status(bind: Engine | Connection) -> SchemaStatus:
    """Read the database's revision (one query; never creates anything). Connection errors propagate."""
    if isinstance(bind, Connection):
        current = _current(bind)
    else:
        with bind.connect() as connection:
            current = _current(connection)
    head = head_revision()
    behind = current != head and (current is None or current in _known_revisions())
    return SchemaStatus(current=current, head=head, behind=behind)


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply every migration the database lacks; returns (revision before, revision after). Keeps every row."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Two upgrades at once (a Job retried while the first still runs) queue here, released at commit.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
        before = _current(connection)
        config = _config(connection)
        if before is None:
            tables = set(inspect(connection).get_table_names()) & BASELINE_TABLES
            if tables == BASELINE_TABLES:
                command.stamp(config, BASELINE_REVISION)
            elif tables:
                raise SchemaBehind(
                    f"the database has some tables of the first revision ({', '.join(sorted(tables))}) but not all"
                    " and no alembic_version: it was not made by this project, nothing was changed"
                )
        command.upgrade(config, "head")
        return before, head_revision()


def stamp_head(connection: Connection) -> None:
    """Record the head revision without running migrations (the schema was made from the models)."""
    MigrationContext.configure(connection).stamp(_scripts(), "head")


def create_all_at_head(engine: Engine) -> None:
    """Create every table from the models and stamp the head revision: a fresh database, cheaply (for tests)."""
    with engine.begin() as connection:
        Base.metadata.create_all(connection)
        stamp_head(connection)


def create_revision(engine: Engine, message: str) -> str:
    """Autogenerate a revision from the models' difference to ``engine``'s database (at head); returns its path."""
    with engine.begin() as connection:
        script = command.revision(_config(connection), message=message, autogenerate=True)
    assert isinstance(script, Script), script
    return str(script.path)
