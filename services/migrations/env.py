"""Alembic's environment, configured in code: :mod:`services.schema` hands it an open connection.

No ``alembic.ini``: ``python -m actors.db upgrade`` (and ``revision``) build the configuration, put the
connection in ``config.attributes["connection"]`` and call Alembic's commands, so migrations run on exactly
the engine the application uses (SQLite or PostgreSQL, from ``DATABASE_URL``).
"""

from __future__ import annotations

from alembic import context

from services.model import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through services.schema (python -m actors.db upgrade), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things: batch mode copies the table, so one revision serves both databases.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
