"""``python -m actors.db upgrade`` and ``seed`` on SQLite and PostgreSQL, each in a database of its own.

Upgrading never touches a row; seeding adds the missing demo products and never resets the stock of one
that exists (reservations may hold part of it).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text

from actors.db import DEMO_STOCK, main
from services.model import Base, Order, Product, Reservation
from services.schema import BASELINE_TABLES, SchemaStatus, head_revision, schema_status, upgrade
from services.unit_of_work import create_schema, make_engine, make_session_factory
from tests.environment.database import own_postgres_database

HEAD = head_revision()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty database of this test's own, named by ``DATABASE_URL`` as the commands read it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'commands.db'}"
        monkeypatch.setenv("DATABASE_URL", url)
        yield url
        return
    with own_postgres_database("tracedq_dbcmd") as url:
        monkeypatch.setenv("DATABASE_URL", url)
        yield url


def _stock(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            return {product.sku: product.stock for product in session.scalars(select(Product))}
    finally:
        engine.dispose()


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_seed_before_upgrade_says_what_to_run(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["seed"], capsys)
    assert (code, out) == (1, [])
    assert err.startswith("error: the schema is missing: run `python -m actors.db upgrade` first ("), err


def test_upgrade_then_seed_never_resets_held_stock(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Upgrade twice (idempotent; ``migrate`` is its old name), seed, reserve 3 apples, then upgrade and seed
    again: stock stays 97."""
    where = make_engine(database_url).url.render_as_string(hide_password=True)
    assert _run(["upgrade"], capsys) == (0, [f"schema upgraded from none to {HEAD} at {where}"], "")
    assert _run(["migrate"], capsys) == (0, [f"schema already at {HEAD} at {where}"], "")
    engine = make_engine(database_url)
    assert set(inspect(engine).get_table_names()) >= {"products", "orders", "reservations", "processed_messages"}
    assert _stock(database_url) == {}

    assert _run(["seed"], capsys) == (
        0,
        [
            "added SKU-APPLE: stock 100",
            "added SKU-PEAR: stock 50",
            "added SKU-RARE: stock 1",
            f"demo stock seeded at {where}",
        ],
        "",
    )
    assert _stock(database_url) == {sku: stock for sku, (_, stock) in DEMO_STOCK.items()}

    # What reserve_inventory leaves behind: stock deducted, an open reservation holding it.
    now = datetime.now(UTC)
    with make_session_factory(engine)() as session, session.begin():
        session.add(Order(id="o-1", customer_email="ada@example.com", status="reserved", created_at=now))
        session.flush()
        session.add(Reservation(order_id="o-1", sku="SKU-APPLE", quantity=3, expires_at=now + timedelta(minutes=15)))
        session.get(Product, "SKU-APPLE").stock = 97
    engine.dispose()

    assert _run(["upgrade"], capsys) == (0, [f"schema already at {HEAD} at {where}"], "")
    assert _run(["seed"], capsys) == (
        0,
        [
            "kept SKU-APPLE: stock 97, 3 held by open reservations (left unchanged)",
            "kept SKU-PEAR: stock 50, 0 held by open reservations (left unchanged)",
            "kept SKU-RARE: stock 1, 0 held by open reservations (left unchanged)",
            f"demo stock seeded at {where}",
        ],
        "",
    )
    assert _stock(database_url) == {"SKU-APPLE": 97, "SKU-PEAR": 50, "SKU-RARE": 1}


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["drop"])
    assert exited.value.code == 2
    assert "invalid choice: 'drop'" in capsys.readouterr().err


def test_the_migrations_build_exactly_the_models(database_url: str) -> None:
    """Autogenerate finds nothing to change on a freshly upgraded database: models and migrations agree.

    A model changed without a migration (or the reverse) fails here; ``python -m actors.db revision -m ...``
    writes the missing migration.
    """
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_create_schema_leaves_the_database_at_head(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert schema_status(engine) == SchemaStatus(current=None, head=HEAD, behind=True)
        assert schema_status(engine).describe() == f"schema behind (at none, code needs {HEAD})"
        create_schema(engine)
        assert schema_status(engine) == SchemaStatus(current=HEAD, head=HEAD, behind=False)
        assert schema_status(engine).describe() == "ok"
    finally:
        engine.dispose()


def test_upgrade_adopts_a_database_made_before_migrations(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``migrate`` used to be ``create_all``: such a database is stamped at the first revision, rows kept."""
    engine = make_engine(database_url)
    baseline = [table for name, table in Base.metadata.tables.items() if name in BASELINE_TABLES]
    Base.metadata.create_all(engine, tables=baseline)  # the tables the old create_all made: revision 0001's
    with make_session_factory(engine)() as session, session.begin():
        session.add(Product(sku="SKU-KEPT", name="Kept", stock=7))
    where = engine.url.render_as_string(hide_password=True)
    assert schema_status(engine).describe() == f"schema behind (at none, code needs {HEAD})"
    engine.dispose()

    assert _run(["upgrade"], capsys) == (0, [f"schema upgraded from none to {HEAD} at {where}"], "")
    assert _stock(database_url) == {"SKU-KEPT": 7}
    engine = make_engine(database_url)
    assert schema_status(engine).describe() == "ok"
    engine.dispose()


def test_upgrade_refuses_a_database_with_foreign_tables_of_the_same_names(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE products (sku VARCHAR(64) PRIMARY KEY)"))
    where = engine.url.render_as_string(hide_password=True)
    engine.dispose()

    assert _run(["upgrade"], capsys) == (
        1,
        [],
        "error: the database has some tables of the first revision (products) but not all and no alembic_version:"
        f" it was not made by this project, nothing was changed ({where})\n",
    )
    engine = make_engine(database_url)
    try:
        assert set(inspect(engine).get_table_names()) == {"products"}
    finally:
        engine.dispose()


def test_a_revision_this_code_does_not_know_is_not_behind(database_url: str) -> None:
    """A newer release migrated while this one still runs: its workers keep going (migrations add, then drop)."""
    engine = make_engine(database_url)
    try:
        create_schema(engine)
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
        assert schema_status(engine) == SchemaStatus(current="ffff", head=HEAD, behind=False)
    finally:
        engine.dispose()
