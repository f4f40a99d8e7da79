"""The explicit schema command: ``python -m actors.db upgrade`` (and ``seed`` for demo stock).

Processes never create tables on their own; deployment runs this once per release.
"""

from __future__ import annotations

import sys

from actors.settings import load_settings
from services.model import Product
from services.unit_of_work import create_schema, make_engine, make_session_factory

__all__ = ["DEMO_STOCK", "main"]

DEMO_STOCK = {"SKU-APPLE": ("Apple", 100), "SKU-PEAR": ("Pear", 50), "SKU-RARE": ("Rare truffle", 1)}


def main(argv: list[str]) -> int:
    """Run ``upgrade`` (create missing tables) or ``seed`` (create tables and demo products)."""
    if len(argv) != 1 or argv[0] not in ("upgrade", "seed"):
        print("usage: python -m actors.db upgrade|seed", file=sys.stderr)
        return 2
    engine = make_engine(load_settings().database_url)
    create_schema(engine)
    if argv[0] == "seed":
        with make_session_factory(engine)() as session:
            for sku, (name, stock) in DEMO_STOCK.items():
                session.merge(Product(sku=sku, name=name, stock=stock))
            session.commit()
    print(f"schema ready at {engine.url.render_as_string(hide_password=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
