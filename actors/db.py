"""The database commands: ``python -m actors.db upgrade`` (the schema) and ``python -m actors.db seed`` (demo stock).

Separate steps. ``upgrade`` applies the Alembic migrations the database lacks (``services/migrations``) and
keeps every row, so it is safe to run on every release; processes never change the schema themselves, and a
worker does not consume until the database is at the revision its code needs. ``migrate`` is the old name of
``upgrade``. ``seed`` adds the demo products that are not there yet and never changes a product that exists:
its stock may be held by reservations, and writing the demo figure over it would hand out stock that is
already promised. ``revision -m MESSAGE`` writes a new migration from the models' difference to an upgraded
database (for developers). A thin entry point over :mod:`services.schema`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sqlalchemy import Engine, func, inspect, select

from actors.settings import load_settings
from services.model import Product, Reservation
from services.schema import SchemaBehind, create_revision, schema_status, upgrade
from services.unit_of_work import make_engine, make_session_factory

__all__ = ["DEMO_STOCK", "SchemaMissing", "main", "seed_demo_stock"]

DEMO_STOCK = {"SKU-APPLE": ("Apple", 100), "SKU-PEAR": ("Pear", 50), "SKU-RARE": ("Rare truffle", 1)}


class SchemaMissing(Exception):
    """``seed`` ran before ``upgrade``."""


def seed_demo_stock(engine: Engine) -> list[str]:
    """Insert each missing demo product; leave existing ones as they are. Returns one line per product."""
    if not inspect(engine).has_table(Product.__tablename__):
        raise SchemaMissing("the schema is missing: run `python -m actors.db upgrade` first")
    lines = []
    with make_session_factory(engine)() as session, session.begin():
        for sku, (name, stock) in DEMO_STOCK.items():
            existing = session.get(Product, sku)
            if existing is None:
                session.add(Product(sku=sku, name=name, stock=stock))
                lines.append(f"added {sku}: stock {stock}")
                continue
            held = session.scalar(
                select(func.coalesce(func.sum(Reservation.quantity), 0)).where(
                    Reservation.sku == sku, Reservation.released.is_(False)
                )
            )
            lines.append(f"kept {sku}: stock {existing.stock}, {held} held by open reservations (left unchanged)")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m actors.db upgrade|seed|revision``: 0 done, 1 failed, 2 bad usage."""
    parser = argparse.ArgumentParser(prog="python -m actors.db", description="Database schema and demo data.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{upgrade,seed,revision}")
    commands.add_parser(
        "upgrade", aliases=["migrate"], help="apply the migrations the database lacks (idempotent, keeps every row)"
    )
    commands.add_parser("seed", help="add the demo products that are missing; existing products are left as they are")
    revision = commands.add_parser(
        "revision", help="write a migration from the models' difference to the (upgraded) database"
    )
    revision.add_argument("-m", "--message", required=True, help="what the migration changes")
    args = parser.parse_args(argv)

    engine = make_engine(load_settings().database_url)
    where = engine.url.render_as_string(hide_password=True)
    try:
        if args.command == "seed":
            for line in seed_demo_stock(engine):
                print(line)
            print(f"demo stock seeded at {where}")
        elif args.command == "revision":
            schema_status(engine).require_current()
            print(f"wrote {create_revision(engine, args.message)}")
        else:
            before, after = upgrade(engine)
            if before == after:
                print(f"schema already at {after} at {where}")
            else:
                print(f"schema upgraded from {before or 'none'} to {after} at {where}")
    except (SchemaMissing, SchemaBehind) as exc:
        print(f"error: {exc} ({where})", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
