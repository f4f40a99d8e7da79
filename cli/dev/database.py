"""``tracedq dev``'s database step: the schema made sure of on start, demo stock only into an empty catalogue.

Run as ``python -m cli.dev.database URL``, a short process of its own before the services start: importing
the project's models loads ``actors``, which builds the broker and sets up the SDK, which ``tracedq dev``
itself must not do.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from actors.db import DEMO_STOCK
from services.model import Product
from services.unit_of_work import create_schema, make_engine, make_session_factory

__all__ = ["main", "prepare_database"]


def prepare_database(url: str) -> str:
    """Create the tables that are missing; add the demo products when there are none. Says what it did.

    Existing rows are never touched: a catalogue someone filled, or stock the last run reserved, stays.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    try:
        create_schema(engine)
        with make_session_factory(engine)() as session:
            if session.scalar(select(func.count()).select_from(Product)):
                seeded = ""
            else:
                session.add_all(Product(sku=sku, name=name, stock=stock) for sku, (name, stock) in DEMO_STOCK.items())
                session.commit()
                seeded = "; the catalogue was empty: added " + ", ".join(
                    f"{sku} ({stock})" for sku, (_name, stock) in DEMO_STOCK.items()
                )
    finally:
        engine.dispose()
    return f"{parsed.render_as_string(hide_password=True)}: schema ready{seeded}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m cli.dev.database DATABASE_URL", file=sys.stderr)
        return 2
    try:
        print(prepare_database(args[0]), flush=True)
    except Exception as exc:  # a bad URL, a read-only file, a server that is down: one line, not a traceback
        print(f"cannot prepare the database {args[0]}: {type(exc).__name__}: {exc}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
