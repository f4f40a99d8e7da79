"""The broadcast catalogue actor on the StubBroker: one message refreshes this process's cache."""

from __future__ import annotations

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from actors import bootstrap, catalog
from messaging.broadcast import is_broadcast
from services.catalog import CatalogCache, CatalogEntry
from services.model import Product


@pytest.fixture
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> CatalogCache:
    replacement = CatalogCache()
    monkeypatch.setattr(catalog, "cache", replacement)
    return replacement


def test_refresh_loads_and_then_reloads_the_products(
    deps: bootstrap.Dependencies,
    broker: StubBroker,
    worker: dramatiq.Worker,
    fresh_cache: CatalogCache,
    span_exporter: InMemorySpanExporter,
) -> None:
    """The actor fills the cache from the database; a second broadcast picks up a change."""
    assert catalog.refresh_catalog_cache.actor_name == "refresh_catalog_cache"
    assert is_broadcast(catalog.refresh_catalog_cache.queue_name)

    catalog.refresh_catalog_cache.send()
    broker.join(catalog.QUEUE, fail_fast=True)
    worker.join()
    assert fresh_cache.snapshot() == {"APPLE": CatalogEntry("Apple", 10), "PEAR": CatalogEntry("Pear", 2)}

    with deps.session_factory() as session:
        session.add(Product(sku="PLUM", name="Plum", stock=7))
        session.get(Product, "PEAR").stock = 0
        session.commit()
    catalog.refresh_catalog_cache.send()
    broker.join(catalog.QUEUE, fail_fast=True)
    worker.join()
    assert fresh_cache.refreshes == 2
    assert fresh_cache.get("PLUM") == CatalogEntry("Plum", 7)
    assert fresh_cache.get("PEAR") == CatalogEntry("Pear", 0)

    spans = {span.name: span for span in span_exporter.get_finished_spans()}
    refresh, process = spans["refresh catalog cache"], spans[f"process {catalog.QUEUE}"]
    assert refresh.parent is not None and refresh.parent.span_id == process.context.span_id
    assert refresh.attributes["catalog.products"] == 3
