"""DramatiqInstrumentor: every broker gets Tracing and LogContext first, and uninstrument() takes them off."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import dramatiq
import dramatiq.broker
import pytest
from dramatiq.broker import Broker
from dramatiq.brokers.stub import StubBroker
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from observability import LogContext, Tracing, install
from observability.instrumentor import DramatiqInstrumentor

ORIGINAL_INIT = Broker.__init__


@pytest.fixture
def instrumentor() -> Iterator[DramatiqInstrumentor]:
    """The (singleton) instrumentor, uninstrumented again afterwards, with the global broker restored."""
    saved = dramatiq.broker.global_broker
    instrumentor = DramatiqInstrumentor()
    yield instrumentor
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    dramatiq.broker.global_broker = saved
    assert Broker.__init__ is ORIGINAL_INIT


def declare_noop(broker: Broker) -> dramatiq.Actor:
    """An actor that does nothing, on queue ``work`` of ``broker``."""

    def noop() -> None:
        pass

    return dramatiq.actor(actor_name="noop", queue_name="work", broker=broker)(noop)


def ours(broker: Broker) -> list[type]:
    """The classes of our middleware on ``broker``, in order."""
    return [type(m) for m in broker.middleware if isinstance(m, (Tracing, LogContext))]


def test_a_broker_built_after_instrument_gets_tracing_and_log_context_first(instrumentor: DramatiqInstrumentor) -> None:
    """A new broker has Tracing at 0 and LogContext at 1, and its enqueue is wrapped."""
    instrumentor.instrument()
    broker = StubBroker()
    assert [type(m) for m in broker.middleware[:2]] == [Tracing, LogContext]
    assert "enqueue" in broker.__dict__


def test_uninstrument_removes_the_middleware_and_the_enqueue_wrapper(instrumentor: DramatiqInstrumentor) -> None:
    """After uninstrument() the broker has neither middleware, its own enqueue, and Broker.__init__ is Dramatiq's."""
    instrumentor.instrument()
    broker = StubBroker()
    instrumentor.uninstrument()
    assert ours(broker) == []
    assert "enqueue" not in broker.__dict__
    assert Broker.__init__ is ORIGINAL_INIT
    assert ours(StubBroker()) == []


def test_instrument_twice_installs_once(instrumentor: DramatiqInstrumentor) -> None:
    """A second instrument() changes nothing: one Tracing, one LogContext, one wrapper."""
    instrumentor.instrument()
    wrapped_init = Broker.__init__
    instrumentor.instrument()
    broker = StubBroker()
    assert Broker.__init__ is wrapped_init
    assert ours(broker) == [Tracing, LogContext]


def test_the_global_broker_set_before_instrument_is_instrumented(instrumentor: DramatiqInstrumentor) -> None:
    """The broker already set with dramatiq.set_broker gets the middleware too."""
    broker = StubBroker()
    dramatiq.set_broker(broker)
    instrumentor.instrument()
    assert ours(broker) == [Tracing, LogContext]


def test_instrument_does_not_create_a_global_broker(instrumentor: DramatiqInstrumentor) -> None:
    """With no global broker, instrument() leaves it unset (get_broker() would build a RabbitmqBroker)."""
    dramatiq.broker.global_broker = None
    instrumentor.instrument()
    assert dramatiq.broker.global_broker is None


def test_a_broker_with_its_own_tracing_is_left_alone(instrumentor: DramatiqInstrumentor) -> None:
    """The app's own Tracing in the constructor's list is kept, not replaced."""
    instrumentor.instrument()
    own = Tracing()
    broker = StubBroker(middleware=[own])
    assert broker.middleware == [own]


def test_spans_go_to_the_tracer_provider_passed_to_instrument(instrumentor: DramatiqInstrumentor) -> None:
    """instrument(tracer_provider=...) reaches each broker's Tracing: the send span lands in that provider."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor.instrument(tracer_provider=provider)
    broker = StubBroker()
    declare_noop(broker).send()
    assert [(s.name, s.kind) for s in exporter.get_finished_spans()] == [("send work", SpanKind.PRODUCER)]


def test_the_apps_own_install_takes_over_the_send_spans(instrumentor: DramatiqInstrumentor) -> None:
    """An app calling observability.install after construction gets its Tracing on both sides, not ours."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor.instrument()
    broker = StubBroker()
    install(broker, Tracing(tracer_provider=provider))
    declare_noop(broker).send()
    assert [s.name for s in exporter.get_finished_spans()] == ["send work"]
    instrumentor.uninstrument()
    assert ours(broker) == [Tracing, LogContext]  # the app's, untouched


def test_importing_the_instrumentor_adds_no_sdk_import() -> None:
    """observability.instrumentor itself imports no opentelemetry.sdk module (beyond what observability does)."""
    probe = (
        "import sys\n"
        "import observability\n"
        "before = {m for m in sys.modules if m.startswith('opentelemetry.sdk')}\n"
        "import observability.instrumentor\n"
        "print(sorted({m for m in sys.modules if m.startswith('opentelemetry.sdk')} - before))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
