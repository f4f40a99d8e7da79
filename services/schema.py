"""The schema's migrations, through Alembic: upgrade, stamp, autogenerate (``python -m actors.db``).

Where a database stands against them is :mod:`services.schema_status` (no Alembic import: the API's readiness,
the worker tree's readiness and the worker's :class:`~worker_health.schema_gate.SchemaGate` ask it); its
names are re-exported here for the commands.

A database made by the ``create_all`` of the days before migrations (every table of the first revision, no
``alembic_version``) is adopted: :func:`upgrade` stamps it at the first revision, then upgrades it.
"""

from __future__ import annotations

import logging

# Alembic announces each autogenerate plugin at INFO as it is first imported: seven lines in a demo's or a
# test's output, now that it is imported when a schema is made rather than before logging is configured.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import Script, ScriptDirectory  # noqa: E402
from sqlalchemy import Connection, Engine, inspect, text  # noqa: E402

from services.model import Base  # noqa: E402
from services.schema_status import (  # noqa: E402
    MIGRATIONS_DIR,
    SchemaBehind,
    SchemaStatus,
    current_revision,
    head_revision,
    schema_status,
)

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

#: The first revision: the schema as it was when migrations came in (``create_all`` made it before).
BASELINE_REVISION = "0001"
_UPGRADE_LOCK = 0x7472616365647100  # "tracedq\0": the advisory lock key of an upgrade on PostgreSQL
BASELINE_TABLES = frozenset({"products", "orders", "order_lines", "reservations", "users", "processed_messages"})


def _not_context_chatter(record: logging.LogRecord) -> bool:
    # Alembic logs these two lines each time it reads a revision: every readiness probe would repeat them.
    return not str(record.msg).startswith(("Context impl ", "Will assume "))


logging.getLogger("alembic.runtime.migration").addFilter(_not_context_chatter)


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
        before = current_revision(connection)
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
    MigrationContext.configure(connection).stamp(ScriptDirectory(str(MIGRATIONS_DIR)), "head")


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
