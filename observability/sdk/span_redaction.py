"""Exception texts out of every exported span, whoever made it, unless personal data capture is on.

Our ``Tracing`` writes exception events and statuses with texts already vetted (observability/personal_data.py).
Every other instrumentation records exceptions with the SDK's ``Span.record_exception`` and a status of
``Type: text``: the services' spans, SQLAlchemy's (whose errors quote the statement's parameters), FastAPI's. Those
texts often hold what failed, an email address or a name. :class:`RedactingSpanProcessor` wraps the span processor
and hands it a copy of such a span (public ``ReadableSpan`` constructor) in which each ``exception`` event's
message, the exception lines of its stack trace and the status description keep the exception type only.

What stays: span names, attributes, frames of stack traces (file, line, function, source line: code, not data).
Indented lines inside a multi-line exception text are indistinguishable from frames and stay too.
"""

from __future__ import annotations

import re
from typing import Final

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Status

from observability import semconv
from observability.personal_data import HIDDEN

__all__ = ["RedactingSpanProcessor", "redacted_stack_trace", "redacted_status"]

#: Instrumentation scopes whose spans carry vetted texts only: our own middleware's.
_VETTED_SCOPES: Final = frozenset({"observability.dramatiq"})
_EXCEPTION_LINE: Final = re.compile(r"[A-Za-z_][\w.]*")
_CHAIN_LINES: Final = ("Traceback (most recent call last):", "The above exception", "During handling of the above")


def redacted_status(description: str | None) -> str | None:
    """``ValueError: bad 'ada@...'`` -> ``ValueError: [hidden: ...]``; None stays None."""
    if not description:
        return description
    name, sep, _ = description.partition(": ")
    return f"{name}: {HIDDEN}" if sep and _EXCEPTION_LINE.fullmatch(name) else HIDDEN


def redacted_stack_trace(text: str) -> str:
    """A Python traceback's text with each exception's text replaced by :data:`HIDDEN`, frames kept."""
    out: list[str] = []
    in_text = False  # inside an exception's text, which may span lines
    for line in text.splitlines(keepends=True):
        if line.startswith(_CHAIN_LINES):
            in_text = False
            out.append(line)
        elif not line.strip() or line[0] in " \t":
            if not in_text or not line.strip():
                out.append(line)
        elif not in_text:
            name = _EXCEPTION_LINE.match(line)
            out.append(f"{name.group(0) if name else 'Exception'}: {HIDDEN}\n")
            in_text = True
    return "".join(out)


def _needs_redaction(span: ReadableSpan) -> bool:
    scope = span.instrumentation_scope
    if scope is not None and scope.name in _VETTED_SCOPES:
        return False
    return bool(span.status.description) or any(event.name == semconv.EXCEPTION_EVENT for event in span.events)


def _redacted_event(event: Event) -> Event:
    if event.name != semconv.EXCEPTION_EVENT or not event.attributes:
        return event
    attributes = dict(event.attributes)
    if semconv.EXCEPTION_MESSAGE in attributes:
        attributes[semconv.EXCEPTION_MESSAGE] = HIDDEN
    trace_text = attributes.get(semconv.EXCEPTION_STACKTRACE)
    if isinstance(trace_text, str):
        attributes[semconv.EXCEPTION_STACKTRACE] = redacted_stack_trace(trace_text)
    return Event(event.name, attributes, event.timestamp)


def _redacted(span: ReadableSpan) -> ReadableSpan:
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=[_redacted_event(event) for event in span.events],
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code, redacted_status(span.status.description)),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanProcessor(SpanProcessor):
    """Passes every span to ``inner``; a span with an exception event or a status text, as a redacted copy."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.inner.on_end(_redacted(span) if _needs_redaction(span) else span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)
