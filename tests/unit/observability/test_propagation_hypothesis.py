"""Generated carriers against the propagation code: whatever a producer writes, reading it never raises.

Issue 7, fault 6: a message's ``options.trace_context`` is hostile until proven otherwise. Hypothesis generates
carriers of any shape (text, bytes, numbers, nesting, values around and far beyond the size caps), strings that
look like a ``traceparent`` or almost do, and junk ``tracestate``/``baggage``. The properties:

- :func:`read_carrier` never raises, accepts exactly what ``docs/wire-format.md`` documents (a flat object of
  strings, at most 16 keys, per-field caps, 9 KiB in all) and flags everything else present as invalid;
- :func:`extract_context` never raises on an accepted carrier and yields a span context that is wholly valid
  (both ids non-zero, remote, the ids of the ``traceparent``) or wholly invalid, never something in between;
- junk ``tracestate``/``baggage`` beside a valid ``traceparent`` never costs the parent;
- a valid context round-trips through :func:`inject_context`, :func:`read_carrier` and :func:`extract_context`.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from observability.propagation import CARRIER_KEY, MAX_CARRIER_BYTES, extract_context, inject_context, read_carrier

# The caps documented in docs/wire-format.md, restated here as the oracle.
FIELD_CAPS = {"traceparent": 128, "tracestate": 1024, "baggage": 8192}
OTHER_FIELD_CAP = 1024
MAX_KEYS = 16
# W3C Trace Context: lowercase hex fields; a future version may append "-..." fields, version 00 may not.
W3C = re.compile(r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)$")
FIELDS = ["traceparent", "tracestate", "baggage"]

hex_digits = st.text("0123456789abcdef", min_size=0, max_size=40)
traceparent_like = st.one_of(
    st.builds(
        lambda version, trace_id, span_id, flags, tail: f"{version}-{trace_id}-{span_id}-{flags}{tail}",
        st.sampled_from(["00", "01", "cc", "ff", "0", "000", "0g", "FF"]) | hex_digits,
        st.sampled_from(["0" * 32, "A" * 32]) | st.text("0123456789abcdef", min_size=30, max_size=34),
        st.sampled_from(["0" * 16]) | st.text("0123456789abcdef", min_size=14, max_size=18),
        st.sampled_from(["00", "01", "ff", "zz", "1"]),
        st.sampled_from(["", "-", "-extra", " ", "\t", "\n", "-00-11"]) | st.text(max_size=10),
    ),
    st.text(max_size=140),
)
# Sizes just around each documented cap, and anything up to well beyond them all.
CAPS = (*FIELD_CAPS.values(), OTHER_FIELD_CAP, MAX_CARRIER_BYTES)
CAP_EDGES = sorted({cap + delta for cap in CAPS for delta in (-1, 0, 1)})
long_text = st.builds(
    lambda char, size: char * size,
    st.sampled_from(["a", "=", ",", "é", "\x00", "𝄞"]),
    st.sampled_from(CAP_EDGES) | st.integers(0, 20_000),
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=200),
    st.binary(max_size=200),
    traceparent_like,
    long_text,
)
anything = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10) | st.integers(), children, max_size=5)
    ),
    max_leaves=20,
)
string_carriers = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=12),
    st.one_of(traceparent_like, st.text(max_size=300), long_text),
    max_size=20,
)
carriers = st.one_of(
    string_carriers,
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=12) | st.integers(), anything, max_size=20),
    anything,
)


def documented_valid(raw: Any) -> bool:
    """What docs/wire-format.md says the worker accepts."""
    if not isinstance(raw, dict) or len(raw) > MAX_KEYS:
        return False
    if not all(isinstance(key, str) and isinstance(value, str) for key, value in raw.items()):
        return False
    if any(len(value) > FIELD_CAPS.get(key, OTHER_FIELD_CAP) for key, value in raw.items()):
        return False
    return sum(len(key) + len(value) for key, value in raw.items()) <= MAX_CARRIER_BYTES


def span_context_of(carrier: dict[str, str]) -> SpanContext:
    return trace.get_current_span(extract_context(carrier)).get_span_context()


def assert_whole(context: SpanContext, carrier: dict[str, str]) -> None:
    """Either every part of the context is valid and comes from the traceparent, or none is."""
    if not context.is_valid:
        assert context.trace_id == 0 and context.span_id == 0, context
        return
    assert context.trace_id != 0 and context.span_id != 0 and context.is_remote, context
    match = W3C.match(carrier["traceparent"])
    assert match is not None, carrier["traceparent"]
    assert (format(context.trace_id, "032x"), format(context.span_id, "016x")) == match.group(2, 3)


@settings(max_examples=120, deadline=None)
@given(carriers, st.booleans())
def test_reading_any_carrier_never_raises_and_accepts_exactly_the_documented_shape(raw: Any, present: bool) -> None:
    """Accepted: a flat object of strings within the caps, returned as is; anything else present is flagged."""
    options = {CARRIER_KEY: raw, "retries": 0} if present else {"retries": 0}
    carrier, invalid = read_carrier(options)
    if not present or raw is None:
        assert (carrier, invalid) == (None, False)
    elif documented_valid(raw):
        assert (carrier, invalid) == (raw, False)
    else:
        assert (carrier, invalid) == (None, True)


@settings(max_examples=200, deadline=None)
@given(string_carriers)
def test_extracting_an_accepted_carrier_gives_a_whole_context_or_none(raw: dict[str, str]) -> None:
    """Whatever strings an accepted carrier holds, extraction yields no partially valid span context."""
    carrier, _ = read_carrier({CARRIER_KEY: raw})
    if carrier is not None:
        assert_whole(span_context_of(carrier), carrier)


@settings(max_examples=200, deadline=None)
@given(traceparent_like)
def test_a_traceparent_is_used_only_when_it_is_well_formed(value: str) -> None:
    """A malformed traceparent (wrong version, case, length, zero ids...) starts a fresh trace; never raises."""
    context = span_context_of({"traceparent": value})
    assert_whole(context, {"traceparent": value})
    match = W3C.match(value)
    well_formed = (
        match is not None
        and match.group(1) != "ff"
        and match.group(2) != "0" * 32
        and match.group(3) != "0" * 16
        and not (match.group(1) == "00" and match.group(5))
    )
    assert context.is_valid == well_formed, value


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 2**128 - 1),
    st.integers(1, 2**64 - 1),
    st.sampled_from([TraceFlags.DEFAULT, TraceFlags.SAMPLED]),
    st.text(max_size=300),
    st.text(max_size=300),
)
def test_junk_tracestate_or_baggage_never_costs_the_parent(
    trace_id: int, span_id: int, flags: int, tracestate: str, baggage: str
) -> None:
    """The parent named by a valid traceparent survives whatever sits in the other W3C fields."""
    carrier = {
        "traceparent": f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}",
        "tracestate": tracestate,
        "baggage": baggage,
    }
    checked, invalid = read_carrier({CARRIER_KEY: carrier})
    assert checked is not None and not invalid
    context = span_context_of(checked)
    assert (context.trace_id, context.span_id, context.trace_flags, context.is_remote) == (
        trace_id,
        span_id,
        flags,
        True,
    )


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 2**128 - 1),
    st.integers(1, 2**64 - 1),
    st.sampled_from([TraceFlags.DEFAULT, TraceFlags.SAMPLED]),
    st.dictionaries(
        st.builds(str.__add__, st.sampled_from("abcxyz"), st.text("abcxyz0189_-", max_size=15)),
        st.text("abcxyz0189", min_size=1, max_size=16),
        max_size=5,
    ),
)
def test_a_valid_context_round_trips(trace_id: int, span_id: int, flags: int, state: dict[str, str]) -> None:
    """inject -> read -> extract gives back the same ids, flags and tracestate, as a remote context."""
    sent = SpanContext(
        trace_id,
        span_id,
        is_remote=False,
        trace_flags=TraceFlags(flags),
        trace_state=trace.TraceState(list(state.items())),
    )
    options: dict[str, Any] = {}
    inject_context(options, trace.set_span_in_context(NonRecordingSpan(sent)))
    carrier, invalid = read_carrier(options)
    assert carrier is not None and not invalid
    assert carrier["traceparent"] == f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"
    received = span_context_of(carrier)
    assert (received.trace_id, received.span_id, received.trace_flags, received.is_remote) == (
        trace_id,
        span_id,
        flags,
        True,
    )
    assert dict(received.trace_state.items()) == state
