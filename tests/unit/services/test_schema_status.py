"""services.schema_status reads what Alembic would, without importing it (the workers' and API's 11 MiB)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from services.schema import create_all_at_head
from services.schema_status import MIGRATIONS_DIR, SchemaBehind, head_revision, known_revisions, schema_status

ROOT = Path(__file__).resolve().parents[3]


def _alembic_current(url: str) -> str | None:
    with create_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_head_and_revisions_are_alembics() -> None:
    scripts = ScriptDirectory(str(MIGRATIONS_DIR))
    assert head_revision() == scripts.get_current_head()
    assert known_revisions() == {script.revision for script in scripts.walk_revisions()}


def test_the_current_revision_is_what_alembic_reads(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'status.db'}"
    engine = create_engine(url)
    empty = schema_status(engine)
    assert (empty.current, empty.behind) == (None, True) and _alembic_current(url) is None

    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    first = schema_status(engine)
    assert first.current == _alembic_current(url) == "0001"
    assert first.behind == (head_revision() != "0001")

    other = create_engine(f"sqlite:///{tmp_path / 'head.db'}")
    create_all_at_head(other)
    at_head = schema_status(other)
    assert (at_head.current, at_head.behind, at_head.describe()) == (head_revision(), False, "ok")


def test_an_unknown_revision_is_newer_and_two_rows_are_refused(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'odd.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        connection.execute(text("INSERT INTO alembic_version VALUES ('9999')"))
    assert schema_status(engine).behind is False  # a release migrated ahead of this worker
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO alembic_version VALUES ('0001')"))
    with pytest.raises(SchemaBehind, match="several revisions"):
        schema_status(engine)


def test_workers_and_the_api_never_import_alembic() -> None:
    """The broker, the health parts and the status reader load no Alembic; making a schema still does."""
    code = (
        "import sys, actors, api.health, worker_health.health_server, worker_health.schema_gate, "
        "services.schema_status; print(sorted(name for name in sys.modules if name.startswith('alembic')))"
    )
    env = {**os.environ, "BROKER_URL": "memory://", "OTEL_TRACES_EXPORTER": "none"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr
