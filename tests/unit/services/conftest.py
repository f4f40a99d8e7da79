"""A real SQLite database per test (a file, so several threads can share it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from services.model import Product
from services.unit_of_work import SqlUnitOfWork, create_schema, make_engine, make_session_factory


@pytest.fixture
def session_factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'test.db'}")
    create_schema(engine)
    factory = make_session_factory(engine)
    with factory() as session:
        session.add_all([Product(sku="APPLE", name="Apple", stock=10), Product(sku="PEAR", name="Pear", stock=2)])
        session.commit()
    yield factory
    engine.dispose()


@pytest.fixture
def uow(session_factory: sessionmaker[Session]) -> SqlUnitOfWork:
    return SqlUnitOfWork(session_factory)
