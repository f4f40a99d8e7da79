"""Our exception event says what ``Span.record_exception`` says, without Python 3.11's ``^^^`` anchors."""

from __future__ import annotations

import re

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from observability.exception_events import record_exception, stack_trace

ANCHORS = re.compile(r"^\s*[~^]+\s*$\n", re.MULTILINE)


class DomainError(Exception):
    pass


def nested(depth: int) -> None:
    if depth == 0:
        raise KeyError("missing")
    nested(depth - 1)


def chained() -> BaseException:
    """A cause (``raise ... from``) under an implicit context: both links, as Python prints them."""
    try:
        try:
            nested(3)
        except KeyError as exc:
            raise DomainError("order 7 could not be placed") from exc
    except DomainError:
        try:
            raise RuntimeError("while cleaning up")
        except RuntimeError as exc:
            return exc
    raise AssertionError("unreachable")


def raised(function: object) -> BaseException:
    try:
        function()
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


@pytest.mark.parametrize(
    "exception",
    [
        raised(lambda: nested(5)),
        chained(),
        raised(lambda: [][1]),
        DomainError("never raised, no traceback"),
    ],
    ids=["deep", "chained", "builtin", "unraised"],
)
def test_the_event_matches_the_sdks_but_for_the_anchors(exception: BaseException) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("sdk") as span:
        span.record_exception(exception)
    with tracer.start_as_current_span("ours") as span:
        record_exception(span, exception, capture=True)
    sdk, ours = (span.events[0] for span in exporter.get_finished_spans())
    assert ours.name == sdk.name == "exception"
    expected = dict(sdk.attributes)
    expected["exception.stacktrace"] = ANCHORS.sub("", str(expected["exception.stacktrace"]))
    assert dict(ours.attributes) == expected


def test_a_cycle_of_contexts_ends() -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__context__, second.__context__ = second, first
    text = stack_trace(first)
    assert text.count("ValueError: a") == 1 and text.count("ValueError: b") == 1
