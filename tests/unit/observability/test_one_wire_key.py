"""What the middleware writes into a message, one enqueue wrapper for every watcher, state kept off Dramatiq's
objects, and a send span that ends even when the carrier cannot be written."""

from __future__ import annotations

import gc
import threading
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker
from dramatiq.message import Message
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import CarrierT, Setter, TextMapPropagator
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from observability import Metrics, Tracing
from observability.message_state import MessageState
from observability.propagation import CARRIER_KEY, READY_AT_FIELD, extract_context
from observability.publish_watchers import unwatch_publishes
from tests.conftest import drain, make_stub_broker
from tests.spans import is_child, one

DRAMATIQ_OPTIONS = {"retries", "eta", "traceback", "max_retries", "requeue_timestamp"}


def recording_broker(tracing: Tracing | None = None) -> tuple[StubBroker, list[dict[str, Any]]]:
    """A traced StubBroker whose every delivered message's options are kept, as the worker saw them."""
    broker = make_stub_broker(tracing)
    seen: list[dict[str, Any]] = []

    class Record(dramatiq.Middleware):
        def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
            seen.append(dict(message.options))

    broker.add_middleware(Record())
    return broker, seen


def test_a_message_carries_only_the_carrier_besides_dramatiqs_own_options(span_exporter: InMemorySpanExporter) -> None:
    broker, seen = recording_broker()

    @dramatiq.actor(actor_name="plain", queue_name="work", broker=broker)
    def plain() -> None:
        pass

    plain.send()
    plain.send_with_options(delay=20)
    drain(broker)
    assert len(seen) == 2
    for options in seen:
        assert set(options) - DRAMATIQ_OPTIONS == {CARRIER_KEY}
    direct, hopped = seen
    assert set(direct[CARRIER_KEY]) == {"traceparent"}
    # The hop records when the message became due, inside the carrier: Dramatiq deleted the eta.
    assert set(hopped[CARRIER_KEY]) == {"traceparent", READY_AT_FIELD}
    assert "eta" not in hopped
    assert int(hopped[CARRIER_KEY][READY_AT_FIELD]) > 0


def test_queue_wait_of_a_delayed_message_counts_from_its_eta(span_exporter: InMemorySpanExporter) -> None:
    broker, _ = recording_broker()

    @dramatiq.actor(actor_name="later", queue_name="work", broker=broker)
    def later() -> None:
        pass

    later.send_with_options(delay=300)
    drain(broker)
    process = one(span_exporter.get_finished_spans(), "process work")
    assert process.attributes["dramatiq.message.queue_wait_ms"] < 250  # not the 300 ms delay


class _BrokenInject(TextMapPropagator):
    def inject(self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] | None = None) -> None:
        raise RuntimeError("cannot inject")

    def extract(self, carrier: CarrierT, context: Context | None = None, getter: Any = None) -> Context:
        return Context()

    @property
    def fields(self) -> set[str]:
        return set()


def test_a_failing_inject_still_ends_the_send_span_and_the_message_runs(span_exporter: InMemorySpanExporter) -> None:
    broker = make_stub_broker(Tracing(propagator=_BrokenInject()))
    done = threading.Event()

    @dramatiq.actor(actor_name="survivor", queue_name="work", broker=broker)
    def survivor() -> None:
        done.set()

    survivor.send()
    drain(broker)
    assert done.is_set()
    spans = span_exporter.get_finished_spans()
    send, process = one(spans, "send work"), one(spans, "process work")
    assert send.end_time is not None
    assert not is_child(process, send)  # nothing was carried, so the delivery starts its own trace


def test_tracing_and_metrics_share_one_enqueue_wrapper_and_leave_none_behind() -> None:
    broker = StubBroker()
    tracing, metrics = Tracing(), Metrics()
    broker.add_middleware(tracing)
    broker.add_middleware(metrics)
    tracing.instrument(broker)
    metrics.instrument(broker)
    wrapper = broker.enqueue
    closure = {cell.cell_contents for cell in wrapper.__closure__ or () if callable(cell.cell_contents)}
    assert any(getattr(fn, "__func__", None) is StubBroker.enqueue for fn in closure)  # wraps the broker's own
    unwatch_publishes(broker, tracing)
    assert broker.enqueue is wrapper  # Metrics still watches
    unwatch_publishes(broker, metrics)
    assert "enqueue" not in broker.__dict__
    assert broker.enqueue.__func__ is StubBroker.enqueue


def test_middleware_writes_no_attribute_of_its_own_on_brokers_or_messages(span_exporter: InMemorySpanExporter) -> None:
    broker = make_stub_broker()
    broker.add_middleware(Metrics())
    proxies: list[MessageProxy] = []

    class Keep(dramatiq.Middleware):
        def after_process_message(self, broker: dramatiq.Broker, message: MessageProxy, **_: Any) -> None:
            proxies.append(message)

    broker.add_middleware(Keep())

    @dramatiq.actor(actor_name="fails", queue_name="work", broker=broker, max_retries=0)
    def fails() -> None:
        raise ValueError("no")

    fails.send()
    drain(broker, fail_fast=False)
    assert len(proxies) == 1
    assert set(vars(proxies[0])) <= {"_message", "_exception", "failed"}
    assert [name for name in vars(broker) if name.startswith(("_tracing", "_metrics"))] == []


def test_message_state_is_per_proxy_identity_and_forgets_collected_proxies() -> None:
    state: MessageState[str] = MessageState()
    message = Message(queue_name="q", actor_name="a", args=(), kwargs={}, options={})
    first, second = MessageProxy(message), MessageProxy(message)
    assert first == second  # Dramatiq compares proxies by message, which is why identity is used
    state.put(first, "first")
    assert state.get(second) is None
    assert state.take(first) == "first"
    assert state.take(first) is None
    state.put(second, "second")
    del second
    gc.collect()
    assert len(state) == 0


def test_the_ready_at_field_never_confuses_the_propagator() -> None:
    carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", READY_AT_FIELD: "123"}
    context = extract_context(carrier)
    from opentelemetry import trace

    assert trace.get_current_span(context).get_span_context().trace_id == 0x0AF7651916CD43DD8448EB211C80319C
