"""Periodic actors: valid cron specs, one ``tick <actor>`` root trace per tick, stale ticks marked skipped.

The actors are bound to the broker ``actors.broker`` builds, a StubBroker here (``BROKER_URL=memory://`` from
``tests/conftest.py``) with the production middleware list, PeriodiqMiddleware(skip_delay=30) included.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dramatiq
import pendulum
import pytest
from dramatiq.brokers.stub import StubBroker
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from periodiq import cron

import services.orders
from actors import bootstrap, schedules, ticks
from actors.broker import broker as actors_broker
from services.model import Product
from services.unit_of_work import create_schema, make_engine, make_session_factory
from tests.spans import is_child, one, stable_attributes

QUEUE = "schedules"


def scheduler_now() -> str:
    """``scheduled_at`` exactly as periodiq's Scheduler writes it (``str`` of a pendulum time)."""
    return str((pendulum.now() + timedelta(seconds=0.5)).replace(microsecond=0))


@pytest.fixture
def broker(span_exporter: InMemorySpanExporter) -> Iterator[StubBroker]:
    """The actors' own broker, emptied after the test."""
    assert isinstance(actors_broker, StubBroker)
    yield actors_broker
    actors_broker.flush_all()


@pytest.fixture
def database(tmp_path: Path) -> Iterator[None]:
    """A SQLite database with two products, handed to the actors through ``bootstrap.override``."""
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    create_schema(engine)
    session_factory = make_session_factory(engine)
    with session_factory() as session:
        session.add_all([Product(sku="SKU-A", name="A", stock=3), Product(sku="SKU-B", name="B", stock=5)])
        session.commit()
    bootstrap.override(bootstrap.Dependencies(session_factory=session_factory, mailer=None, email_limiter=None))
    yield
    bootstrap.override(None)
    engine.dispose()


def drain(broker: StubBroker) -> None:
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        broker.join(QUEUE, fail_fast=True)
        worker.join()
    finally:
        worker.stop()


@pytest.mark.parametrize(
    ("actor", "spec", "due", "not_due"),
    [
        (
            schedules.release_expired_reservations,
            "* * * * *",
            [datetime(2026, 3, 1, 0, 0), datetime(2026, 3, 1, 23, 59)],
            [],
        ),
        (
            schedules.stock_report,
            "0 6 * * *",
            [datetime(2026, 3, 1, 6, 0), datetime(2026, 3, 7, 6, 0)],
            [datetime(2026, 3, 1, 6, 1), datetime(2026, 3, 1, 7, 0), datetime(2026, 3, 1, 18, 0)],
        ),
    ],
)
def test_cron_specs_are_valid(actor: dramatiq.Actor, spec: str, due: list, not_due: list) -> None:
    """Each actor's periodic spec parses and matches exactly the minutes it should."""
    periodic = actor.options["periodic"]
    assert periodic == cron(spec) and str(periodic) == spec
    assert all(periodic.validate(date) for date in due)
    assert not any(periodic.validate(date) for date in not_due)
    assert actor.queue_name == QUEUE and isinstance(actor, ticks.PeriodicActor)


def test_tick_is_one_root_trace_naming_the_schedule(
    broker: StubBroker, database: None, span_exporter: InMemorySpanExporter
) -> None:
    """A scheduler send opens ``tick <actor>`` (root) -> ``send schedules`` -> ``process schedules``."""
    scheduled_at = scheduler_now()
    message = schedules.release_expired_reservations.send_with_options(scheduled_at=scheduled_at)
    drain(broker)

    spans = span_exporter.get_finished_spans()
    tick = one(spans, "tick release_expired_reservations")
    send = one(spans, "send schedules")
    process = one(spans, "process schedules")
    service = one(spans, "release expired reservations")
    assert tick.parent is None and tick.kind is SpanKind.INTERNAL
    assert is_child(send, tick) and send.kind is SpanKind.PRODUCER
    assert is_child(process, send) and is_child(service, process)
    lateness = tick.attributes["dramatiq.schedule.lateness_ms"]
    assert -1_000 <= lateness < 5_000
    assert {k: v for k, v in stable_attributes(tick).items() if k != "dramatiq.schedule.lateness_ms"} == {
        "dramatiq.actor.name": "release_expired_reservations",
        "dramatiq.schedule.cron": "* * * * *",
        "dramatiq.schedule.scheduled_at": scheduled_at,
    }
    assert tick.attributes["messaging.message.id"] == message.message_id
    assert process.attributes["dramatiq.message.outcome"] == "success"


def test_stale_tick_is_skipped_and_marked(
    broker: StubBroker, span_exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tick older than skip_delay is skipped by periodiq: the process span says why, the job never runs."""
    calls: list[object] = []
    monkeypatch.setattr(services.orders, "release_expired_reservations", calls.append)
    scheduled_at = str(pendulum.now().subtract(minutes=2).replace(microsecond=0))
    schedules.release_expired_reservations.send_with_options(scheduled_at=scheduled_at)
    drain(broker)

    spans = span_exporter.get_finished_spans()
    tick, process = one(spans, "tick release_expired_reservations"), one(spans, "process schedules")
    assert tick.attributes["dramatiq.schedule.lateness_ms"] >= 120_000
    assert trace.format_trace_id(process.context.trace_id) == trace.format_trace_id(tick.context.trace_id)
    assert process.attributes["dramatiq.message.skipped"] is True
    assert process.attributes["dramatiq.message.skip_reason"] == f"stale periodic tick (scheduled_at={scheduled_at})"
    assert process.attributes["dramatiq.message.outcome"] == "skipped"
    assert "dramatiq.message.dead_lettered" not in process.attributes
    assert calls == []


def test_manual_run_and_nested_send_are_not_ticks(broker: StubBroker, span_exporter: InMemorySpanExporter) -> None:
    """Without ``scheduled_at``, or inside another span, a send is an ordinary send: no tick span."""
    schedules.stock_report.send()
    with trace.get_tracer("tests").start_as_current_span("operator"):
        schedules.stock_report.send_with_options(scheduled_at=scheduler_now())
    names = sorted(span.name for span in span_exporter.get_finished_spans())
    assert names == ["operator", "send schedules", "send schedules"]


def test_stock_report_logs_and_returns_the_stock(broker: StubBroker, database: None) -> None:
    """The daily job reports stock on hand per SKU."""
    assert schedules.stock_report() == {"SKU-A": 3, "SKU-B": 5}


def test_lateness_is_now_minus_scheduled_at() -> None:
    """Lateness reads periodiq's time format, offsets included; anything unparsable gives None."""
    now = datetime(2026, 3, 1, 6, 0, 2, 500_000, tzinfo=UTC)
    assert ticks.lateness_ms("2026-03-01 07:00:00+01:00", now=now) == 2_500
    assert ticks.lateness_ms("2026-03-01T06:00:03+00:00", now=now) == -500
    assert ticks.lateness_ms("yesterday", now=now) is None


def test_sigterm_flush_is_never_installed_outside_the_scheduler() -> None:
    """The test process (like a dramatiq worker) is not periodiq: SIGTERM keeps its default behaviour."""
    assert not ticks.is_scheduler_process()
    assert ticks.install_flush_on_sigterm() is False
