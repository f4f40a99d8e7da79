"""``python -m actors.db migrate`` and ``seed`` on SQLite and PostgreSQL, each in a database of its own.

Migrating never touches a row; seeding adds the missing demo products and never resets the stock of one
that exists (reservations may hold part of it).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from actors.db import DEMO_STOCK, main
from services.model import Order, Product, Reservation
from services.unit_of_work import make_engine, make_session_factory
from tests.integration.services import own_postgres_database


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


def test_seed_before_migrate_says_what_to_run(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["seed"], capsys)
    assert (code, out) == (1, [])
    assert err.startswith("error: the schema is missing: run `python -m actors.db migrate` first ("), err


def test_migrate_then_seed_never_resets_held_stock(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Migrate twice (idempotent), seed, reserve 3 apples, then migrate and seed again: stock stays 97."""
    where = make_engine(database_url).url.render_as_string(hide_password=True)
    for _ in range(2):
        assert _run(["migrate"], capsys) == (0, [f"schema ready at {where}"], "")
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

    assert _run(["migrate"], capsys) == (0, [f"schema ready at {where}"], "")
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
