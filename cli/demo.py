"""``make demo`` / ``tracedq demo``: the real flows on Dramatiq's in-process broker, drawn in the terminal.

No services needed: the StubBroker stands in for RabbitMQ, a SQLite file for PostgreSQL, and an in-memory
mailer for SMTP (its first send for one order fails, so that email is retried). Each flow's trace is drawn
as a waterfall followed by the log lines carrying its trace id, and every span is appended to an
OTLP/JSON file that ``tracedq trace show`` reads back.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cli.spanfile import from_readable, write_spans
from cli.waterfall import draw_trace, group_by_trace

__all__ = ["DEFAULT_SPANS_FILE", "run_demo"]

DEFAULT_SPANS_FILE = Path(".tracedq") / "spans.jsonl"


class DemoMailer:
    """Prints nothing, keeps the mail, and fails the first send to ``flaky@example.com`` (a 421)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self._failed_once = False

    def send(self, *, to: str, subject: str, body: str) -> None:
        from services.errors import EmailUnavailable

        if to == "flaky@example.com" and not self._failed_once:
            self._failed_once = True
            raise EmailUnavailable("SMTP 421: try again later (demo)")
        self.sent.append((to, subject))


def run_demo(spans_file: Path = DEFAULT_SPANS_FILE) -> int:
    """Run the demo flows, draw their traces, write the spans file. Returns the exit code."""
    os.environ["BROKER_URL"] = "memory://"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    logs = io.StringIO()

    import dramatiq
    from dramatiq.brokers.stub import StubBroker
    from dramatiq.rate_limits import WindowRateLimiter
    from dramatiq.rate_limits.backends import StubBackend

    import actors
    from actors import bootstrap
    from actors.db import DEMO_STOCK
    from observability import configure_logging
    from services.model import Product
    from services.unit_of_work import create_schema, make_engine, make_session_factory

    configure_logging(json=True, stream=logs)
    engine = make_engine(f"sqlite:///{Path(tempfile.mkdtemp(prefix='tracedq-demo-')) / 'demo.db'}")
    create_schema(engine)
    factory = make_session_factory(engine)
    with factory() as session:
        session.add_all(Product(sku=sku, name=name, stock=stock) for sku, (name, stock) in DEMO_STOCK.items())
        session.commit()
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # SQL statements as child spans, as in production; after seeding, so the setup draws no traces.
    SQLAlchemyInstrumentor().instrument(engine=engine, enable_commenter=False)
    bootstrap.override(
        bootstrap.Dependencies(
            session_factory=factory,
            mailer=DemoMailer(),
            email_limiter=WindowRateLimiter(StubBackend(), "demo-email", limit=1000, window=1),  # type: ignore[no-untyped-call]
        )
    )
    broker = actors.broker
    assert isinstance(broker, StubBroker)
    tracer = trace.get_tracer("demo")
    flows = {
        "an order with stock": {
            "order_id": "demo-1",
            "customer_email": "ada@example.com",
            "lines": [{"sku": "SKU-APPLE", "quantity": 2}],
        },
        "an order short of stock": {
            "order_id": "demo-2",
            "customer_email": "grace@example.com",
            "lines": [{"sku": "SKU-RARE", "quantity": 5}],
        },
        "an order whose email fails once": {
            "order_id": "demo-3",
            "customer_email": "flaky@example.com",
            "lines": [{"sku": "SKU-PEAR", "quantity": 1}],
        },
    }
    worker = dramatiq.Worker(broker, worker_timeout=20, worker_threads=2)
    worker.start()
    try:
        for title, order in flows.items():
            with tracer.start_as_current_span(f"demo: {title}"):
                actors.place_order.send(order)
        with tracer.start_as_current_span("demo: a user registers"):
            actors.register_user.send({"user_id": "demo-u1", "email": "alan@example.com", "name": "Alan"})
        with tracer.start_as_current_span("demo: an invalid payload from a foreign producer"):
            invalid = {"order_id": "demo-4", "customer_email": "not-an-email", "lines": []}
            broker.enqueue(
                dramatiq.Message(queue_name="orders", actor_name="place_order", args=(invalid,), kwargs={}, options={})
            )
        for _ in range(3):
            for queue in ("orders", "inventory", "users", "email"):
                broker.join(queue, fail_fast=False)
            worker.join()
    finally:
        worker.stop()
        bootstrap.override(None)

    finished = exporter.get_finished_spans()
    write_spans(spans_file, finished)
    log_lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    for trace_id, spans in group_by_trace([from_readable(s) for s in finished]).items():
        print("\n".join(draw_trace(spans)))
        for line in log_lines:
            if line.get("trace_id") == trace_id:
                print(f"    log {line['level']:<7} {line['event'][:90]}")
        print()
    print(f"spans written to {spans_file} (OTLP/JSON); draw one again with: tracedq trace show TRACE_ID")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_demo())
