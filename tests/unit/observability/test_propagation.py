"""The carrier: what we write, and what we accept back."""

from __future__ import annotations

from opentelemetry import baggage, trace
from opentelemetry.sdk.trace import TracerProvider

from observability.propagation import CARRIER_KEY, extract_context, inject_context, read_carrier


def test_inject_writes_a_flat_string_carrier_that_round_trips() -> None:
    """The carrier is W3C fields as strings under one key, and extracting it gives back span and baggage."""
    span = TracerProvider().get_tracer("t").start_span("s")
    context = baggage.set_baggage("tenant", "acme", trace.set_span_in_context(span))
    options: dict = {"max_retries": 3}
    inject_context(options, context)
    carrier = options[CARRIER_KEY]
    assert set(carrier) == {"traceparent", "baggage"}
    assert all(isinstance(value, str) for value in carrier.values())
    assert options["max_retries"] == 3
    checked, invalid = read_carrier(options)
    assert checked == carrier and not invalid
    restored = extract_context(checked)
    assert trace.get_current_span(restored).get_span_context().span_id == span.get_span_context().span_id
    assert baggage.get_baggage("tenant", restored) == "acme"


def test_a_go_or_node_producer_carrier_is_accepted() -> None:
    """A hand-written W3C carrier (what another language's propagator writes) continues the trace."""
    options = {
        CARRIER_KEY: {
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "tracestate": "vendor=value",
        }
    }
    carrier, invalid = read_carrier(options)
    assert carrier is not None and not invalid
    span_context = trace.get_current_span(extract_context(carrier)).get_span_context()
    assert format(span_context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span_context.is_remote and span_context.trace_state.get("vendor") == "value"


def test_absent_carrier_is_not_flagged() -> None:
    """No carrier at all is normal (a producer without tracing), not an error."""
    assert read_carrier({}) == (None, False)
