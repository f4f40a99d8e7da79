"""A trace's summary for ``trace list``: its root, timing, and the final outcome of the message flow in it.

The outcome is what happened to the messages, read from the spans the tracing middleware writes:

- every ``process <queue>`` span carries ``dramatiq.message.outcome`` for its attempt. A message (its id, on
  one queue: a broadcast delivers one id to several queues) ends with the outcome of its **last** attempt, the
  one with the most ``dramatiq.message.retries``. So an attempt that failed and was retried successfully makes
  the message ``success``: the failed attempt is history, not the flow's result.
- a message sent (a ``send`` span with its id) and not processed yet is ``pending``.
- the flow's outcome is the worst of its messages, in this order: ``dead_lettered``, ``lost``, ``retrying``,
  ``pending``, ``skipped``, ``success``. A flow with no message at all (a health probe, a request refused with
  422) is ``error`` when one of its spans has ERROR status, ``none`` otherwise.

``retrying`` and ``pending`` are open: the flow may still change (``trace tail`` waits for them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cli.spanfile import SpanView
from cli.tracestore.outcomes import MESSAGE_OUTCOMES
from observability import semconv

__all__ = ["TraceSummary", "flow_outcome", "root_of", "summarize"]


@dataclass(frozen=True)
class TraceSummary:
    """One row of ``trace list``."""

    trace_id: str
    start_ns: int
    end_ns: int
    span_count: int
    root_name: str
    outcome: str
    actors: frozenset[str]

    @property
    def duration_ms(self) -> float:
        return max(self.end_ns - self.start_ns, 0) / 1e6


def flow_outcome(spans: Sequence[SpanView]) -> str:
    """The final outcome of the message flow in one trace (see the module docstring)."""
    last_attempts: dict[tuple[str, str], SpanView] = {}
    sent: set[str] = set()
    for span in spans:
        attributes = span.attributes
        message_id = attributes.get(semconv.MESSAGING_MESSAGE_ID)
        if message_id is None:
            continue
        if attributes.get(semconv.MESSAGING_OPERATION_TYPE) == "send":
            sent.add(str(message_id))
        elif semconv.OUTCOME in attributes:
            key = (str(message_id), str(attributes.get(semconv.MESSAGING_DESTINATION_NAME, "")))
            previous = last_attempts.get(key)
            if previous is None or _attempt_order(span) > _attempt_order(previous):
                last_attempts[key] = span
    finals = {str(span.attributes[semconv.OUTCOME]) for span in last_attempts.values()}
    if sent - {message_id for message_id, _ in last_attempts}:
        finals.add("pending")
    for outcome in MESSAGE_OUTCOMES:
        if outcome in finals:
            return outcome
    if finals:  # an outcome this viewer does not know: show it rather than hide it
        return sorted(finals)[0]
    return "error" if any(span.error is not None for span in spans) else "none"


def _attempt_order(span: SpanView) -> tuple[int, int]:
    retries = span.attributes.get(semconv.RETRIES, 0)
    return (retries if isinstance(retries, int) else 0, span.start_ns)


def root_of(spans: Sequence[SpanView]) -> SpanView:
    """The span the trace starts with: the earliest whose parent is not in the trace."""
    ids = {span.span_id for span in spans}
    roots = [span for span in spans if span.parent_id is None or span.parent_id not in ids]
    return min(roots or spans, key=lambda span: (span.parent_id is not None, span.start_ns))


def summarize(spans: Sequence[SpanView]) -> TraceSummary:
    """The list row of one trace's spans (at least one)."""
    actors = frozenset(str(s.attributes[semconv.ACTOR_NAME]) for s in spans if semconv.ACTOR_NAME in s.attributes)
    return TraceSummary(
        trace_id=spans[0].trace_id,
        start_ns=min(span.start_ns for span in spans),
        end_ns=max(span.end_ns for span in spans),
        span_count=len(spans),
        root_name=root_of(spans).name,
        outcome=flow_outcome(spans),
        actors=actors,
    )
