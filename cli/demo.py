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
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cli.spanfile import SpanView, from_readable, write_spans
from cli.waterfall import draw_trace, group_by_trace

__all__ = ["DEFAULT_SPANS_FILE", "FLOWS", "DemoMailer", "draw", "run_demo", "send_flows"]

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


FLOWS: dict[str, dict[str, Any]] = {
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


def send_flows(broker: Any, tracer: trace.Tracer, run: str = "", trace_ids: list[str] | None = None) -> list[str]:
    """Send the five demo flows, each under its own root span; returns their trace ids (hex).

    ``run`` makes ids unique, so a demo against a long-lived database is not absorbed as duplicates.
    ``trace_ids``, when given, gets each id *before* its send: an interrupted run still knows what it sent.
    """
    import dramatiq

    import actors

    trace_ids = [] if trace_ids is None else trace_ids

    def root(title: str) -> Any:
        return tracer.start_as_current_span(f"demo: {title}")

    def record(span: Any) -> None:
        trace_ids.append(f"{span.get_span_context().trace_id:032x}")

    for title, order in FLOWS.items():
        with root(title) as span:
            record(span)
            actors.place_order.send({**order, "order_id": f"{order['order_id']}{run}"})
    with root("a user registers") as span:
        record(span)
        actors.register_user.send({"user_id": f"demo-u1{run}", "email": "alan@example.com", "name": "Alan"})
    with root("an invalid payload from a foreign producer") as span:
        record(span)
        invalid = {"order_id": f"demo-4{run}", "customer_email": "not-an-email", "lines": []}
        broker.enqueue(
            dramatiq.Message(queue_name="orders", actor_name="place_order", args=(invalid,), kwargs={}, options={})
        )
    return trace_ids


def draw(spans: list[SpanView], log_lines: list[dict[str, Any]]) -> None:
    """Print each trace's waterfall followed by its log lines."""
    for trace_id, trace_spans in group_by_trace(spans).items():
        print("\n".join(draw_trace(trace_spans)))
        for line in log_lines:
            if line.get("trace_id") == trace_id:
                print(f"    log {line.get('level', ''):<7} {str(line.get('event', ''))[:90]}")
        print()


def run_demo(spans_file: Path = DEFAULT_SPANS_FILE) -> int:
    """Run the demo flows, draw their traces, write the spans file. Returns the exit code."""
    with tempfile.TemporaryDirectory(prefix="tracedq-demo-") as workdir:  # removed also on Ctrl-C
        return _run(spans_file, Path(workdir))


def _run(spans_file: Path, workdir: Path) -> int:
    os.environ["BROKER_URL"] = "memory://"
    # The demo's data is made up: show exception texts (hidden by default, as they may hold personal data).
    os.environ["TRACE_CAPTURE_ARGS"] = "true"
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "tracedq-demo"}))
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
    from observability.sdk import configure_logging
    from services.model import Product
    from services.unit_of_work import create_schema, make_engine, make_session_factory

    configure_logging(json=True, stream=logs)
    engine = make_engine(f"sqlite:///{workdir / 'demo.db'}")
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
    worker = dramatiq.Worker(broker, worker_timeout=20, worker_threads=2)
    worker.start()
    try:
        send_flows(broker, tracer)
        for _ in range(3):
            for queue in ("orders", "inventory", "users", "email"):
                broker.join(queue, fail_fast=False)
            worker.join()
    finally:
        worker.stop()
        bootstrap.override(None)
        engine.dispose()

    finished = exporter.get_finished_spans()
    write_spans(spans_file, finished)
    log_lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    draw([from_readable(s) for s in finished], log_lines)
    print(f"spans written to {spans_file} (OTLP/JSON); draw one again with: tracedq trace show TRACE_ID")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_demo())
