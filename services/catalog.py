"""The in-process catalogue cache: sku -> (name, stock), reloaded as a whole from the database.

Each worker process holds its own cache; the broadcast actor ``refresh_catalog_cache`` tells every
process to reload it. Readers never see a half-loaded cache: a refresh builds a new mapping and swaps it in.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from opentelemetry import trace
from sqlalchemy import select

from services.model import Product
from services.unit_of_work import SqlUnitOfWork

__all__ = ["CatalogCache", "CatalogEntry"]

_tracer = trace.get_tracer(__name__)


class CatalogEntry(NamedTuple):
    """A product's name and stock on hand, as of the last refresh."""

    name: str
    stock: int


class CatalogCache:
    """A process-local snapshot of the products table; safe to read from any thread."""

    def __init__(self) -> None:
        self._entries: Mapping[str, CatalogEntry] = MappingProxyType({})
        self._lock = threading.Lock()
        self.refreshes = 0

    def refresh(self, uow: SqlUnitOfWork) -> int:
        """Reload every product through ``uow`` (read only, nothing committed); return how many there are."""
        with _tracer.start_as_current_span("refresh catalog cache") as span:
            with uow:
                rows = uow.session.execute(select(Product.sku, Product.name, Product.stock)).all()
            entries = MappingProxyType({sku: CatalogEntry(name, stock) for sku, name, stock in rows})
            with self._lock:
                self._entries = entries
                self.refreshes += 1
            span.set_attribute("catalog.products", len(entries))
            return len(entries)

    def get(self, sku: str) -> CatalogEntry | None:
        """The cached entry for ``sku``, or ``None`` when it was not in the last refresh."""
        return self._entries.get(sku)

    def snapshot(self) -> Mapping[str, CatalogEntry]:
        """The whole cache as of the last refresh (an immutable view)."""
        return self._entries

    def __len__(self) -> int:
        return len(self._entries)
