"""A flow's outcome is its messages' last attempts, worst first; a retried success is a success."""

from __future__ import annotations

from cli.tracestore.flow import flow_outcome, root_of, summarize
from tests.unit.cli.views import process, send, span

T = "a1"


def test_an_attempt_that_failed_then_succeeded_is_success() -> None:
    spans = [
        span(T, "r", "POST /orders"),
        send(T, "s1", "email", "m1", parent="r", start=1),
        process(T, "p1", "email", "m1", "retrying", parent="s1", start=2, error="SMTP 421"),
        send(T, "s2", "email.DQ", "m1", parent="p1", start=3),
        process(T, "p2", "email", "m1", "success", retries=1, parent="s2", start=9),
    ]
    assert flow_outcome(spans) == "success"


def test_a_retry_not_run_yet_is_retrying() -> None:
    spans = [
        send(T, "s1", "email", "m1"),
        process(T, "p1", "email", "m1", "retrying", parent="s1", start=2, error="SMTP 421"),
        send(T, "s2", "email.DQ", "m1", parent="p1", start=3),
    ]
    assert flow_outcome(spans) == "retrying"


def test_the_last_attempt_is_the_one_with_most_retries_whatever_the_arrival_order() -> None:
    # Exporters deliver batches out of order: the later attempt may be stored first.
    later = process(T, "p2", "email", "m1", "dead_lettered", retries=10, start=50)
    earlier = process(T, "p1", "email", "m1", "retrying", retries=9, start=40)
    assert flow_outcome([later, earlier]) == "dead_lettered"


def test_a_sent_message_not_processed_yet_is_pending() -> None:
    spans = [
        send(T, "s1", "orders", "m1"),
        process(T, "p1", "orders", "m1", "success", parent="s1", start=1),
        send(T, "s2", "inventory", "m2", parent="p1", start=2),
    ]
    assert flow_outcome(spans) == "pending"


def test_the_worst_message_is_the_flow_outcome() -> None:
    base = [send(T, "s1", "orders", "m1"), process(T, "p1", "orders", "m1", "success", parent="s1")]
    skipped = [*base, send(T, "s2", "ticks", "m2"), process(T, "p2", "ticks", "m2", "skipped", parent="s2")]
    assert flow_outcome(skipped) == "skipped"
    dead = [*skipped, send(T, "s3", "email", "m3"), process(T, "p3", "email", "m3", "dead_lettered", parent="s3")]
    assert flow_outcome(dead) == "dead_lettered"
    lost = [*skipped, send(T, "s4", "email", "m4"), process(T, "p4", "email", "m4", "lost", parent="s4")]
    assert flow_outcome(lost) == "lost"


def test_a_broadcast_is_one_message_per_queue() -> None:
    """One id on two instance queues: one done, one failed and retrying, is retrying."""
    spans = [
        send(T, "s1", "catalog.broadcast", "m1"),
        process(T, "p1", "catalog.broadcast.vm.1", "m1", "success", parent="s1"),
        process(T, "p2", "catalog.broadcast.vm.2", "m1", "retrying", parent="s1"),
    ]
    assert flow_outcome(spans) == "retrying"


def test_a_trace_without_messages_is_none_or_error() -> None:
    assert flow_outcome([span(T, "r", "POST /orders")]) == "none"
    assert flow_outcome([span(T, "r", "POST /orders", error="boom")]) == "error"


def test_summary_root_is_the_span_without_a_parent_in_the_trace() -> None:
    spans = [
        process(T, "p1", "orders", "m1", "success", parent="s1", start=5, end=9, actor="place_order"),
        span(T, "r", "POST /orders", start=0, end=4),
        send(T, "s1", "orders", "m1", parent="r", start=1, end=2),
    ]
    summary = summarize(spans)
    assert (summary.root_name, summary.span_count, summary.outcome) == ("POST /orders", 3, "success")
    assert summary.duration_ms == 9.0
    assert summary.actors == frozenset({"place_order"})
    # Its parent not (yet) stored: the earliest orphan is where the trace starts, as far as we know.
    assert root_of(spans[:1]).name == "process orders"
