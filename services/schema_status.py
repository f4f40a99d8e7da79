"""Where a database stands against this code's migrations, read without loading Alembic.

Every worker process, the API and the worker tree's health endpoint ask this at start and on every readiness
probe; Alembic's own reader (``MigrationContext`` and ``ScriptDirectory``) costs each of those processes 11 MiB
of imports (``bench/import_rss.py``), for two facts: the one row of ``alembic_version``, and the head of a
linear chain of revision files. Both are read here; the migrations themselves run through Alembic
(:mod:`services.schema`), and tests/unit/services/test_schema_status.py checks that both readers agree.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text

__all__ = [
    "MIGRATIONS_DIR",
    "SchemaBehind",
    "SchemaStatus",
    "current_revision",
    "head_revision",
    "known_revisions",
    "schema_status",
]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_VERSION_TABLE = "alembic_version"  # Alembic's default, which services/migrations/env.py keeps


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


def _revision_and_parent(path: Path) -> tuple[str, tuple[str, ...]]:
    """A revision file's ``revision`` and ``down_revision`` (a string, a tuple of them for a merge, or None)."""
    values: dict[str, object] = {}
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.AnnAssign | ast.Assign) and node.value is not None:
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            for target in targets:
                if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                    values[target.id] = ast.literal_eval(node.value)
    revision, parent = values.get("revision"), values.get("down_revision")
    if not isinstance(revision, str):
        raise ValueError(f"{path} has no revision string")
    parents = (parent,) if isinstance(parent, str) else tuple(parent) if isinstance(parent, tuple) else ()
    return revision, parents


@functools.cache
def _revisions() -> dict[str, tuple[str, ...]]:
    return dict(_revision_and_parent(path) for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")))


def known_revisions() -> frozenset[str]:
    """Every revision this code ships."""
    return frozenset(_revisions())


def head_revision() -> str:
    """The revision this code needs: the one no other revision follows.

    Raises:
        ValueError: no revision, or several heads (Alembic refuses to upgrade those too).
    """
    revisions = _revisions()
    followed = {parent for parents in revisions.values() for parent in parents}
    heads = sorted(set(revisions) - followed)
    if len(heads) != 1:
        raise ValueError(f"the migrations in {MIGRATIONS_DIR} must have one head, not {heads}")
    return heads[0]


def current_revision(connection: Connection) -> str | None:
    """The revision ``alembic_version`` records; None when the database has none.

    Raises:
        SchemaBehind: it records several (not a chain this code made).
    """
    if not inspect(connection).has_table(_VERSION_TABLE):
        return None
    rows = connection.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        raise SchemaBehind(f"the database records several revisions ({', '.join(rows)}): not a chain this code made")
    return str(rows[0]) if rows else None


def schema_status(bind: Engine | Connection) -> SchemaStatus:
    """Read the database's revision (one query; never creates anything). Connection errors propagate."""
    if isinstance(bind, Connection):
        current = current_revision(bind)
    else:
        with bind.connect() as connection:
            current = current_revision(connection)
    head = head_revision()
    behind = current != head and (current is None or current in known_revisions())
    return SchemaStatus(current=current, head=head, behind=behind)
