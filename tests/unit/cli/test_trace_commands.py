"""``tracedq trace list / show`` on a store written here: exact rows, filters, and usage errors (exit 2)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import tracedq
from cli.tracestore.store import TraceStore
from tests.unit.cli.views import process, send, span

BASE_MS = 1_764_000_000_000  # a fixed wall-clock time, in milliseconds


def at(ms: int) -> str:
    return datetime.fromtimestamp((BASE_MS + ms) / 1000).strftime("%m-%d %H:%M:%S")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """Three traces: an order whose email was retried then sent, a dead letter, and a health request."""
    path = tmp_path / "traces.db"
    b = BASE_MS
    with TraceStore(path, create=True) as writer:
        writer.add_spans(
            [
                span("aa1", "1", "POST /orders", start=b, end=b + 5),
                send("aa1", "2", "orders", "m1", parent="1", start=b + 1),
                process("aa1", "3", "orders", "m1", "success", parent="2", start=b + 2, actor="place_order"),
                send("aa1", "4", "email", "m2", parent="3", start=b + 3),
                process("aa1", "5", "email", "m2", "retrying", parent="4", start=b + 4, actor="notify_customer"),
                process("aa1", "6", "email", "m2", "success", retries=1, parent="4", start=b + 900, end=b + 1200),
            ]
        )
        writer.add_spans(
            [
                span("bb2", "1", "POST /orders", start=b + 2000, end=b + 2010),
                send("bb2", "2", "orders", "m3", parent="1", start=b + 2001),
                process("bb2", "3", "orders", "m3", "dead_lettered", parent="2", start=b + 2002, actor="place_order"),
            ]
        )
        writer.add_spans([span("ab3", "1", "GET /health", start=b + 3000, end=b + 3001)])
    return path


def invoke(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(tracedq, list(args))
    return result.exit_code, result.output.splitlines()


def row(trace: str, start_ms: int, duration: str, spans: int, outcome: str, root: str) -> str:
    return f"{trace.ljust(32, '0'):<32}  {at(start_ms):<14}  {duration:>10}  {spans:>5}  {outcome:<13}  {root}"


def test_list_is_newest_first_with_the_flow_outcome(store: Path) -> None:
    code, lines = invoke("trace", "list", "--store", str(store))
    assert code == 0
    assert lines == [
        "TRACE                             START             DURATION  SPANS  OUTCOME        ROOT",
        row("ab3", 3000, "1.0 ms", 1, "none", "GET /health"),
        row("bb2", 2000, "10.0 ms", 3, "dead_lettered", "POST /orders"),
        row("aa1", 0, "1200.0 ms", 6, "success", "POST /orders"),  # the failed email attempt was retried
    ]


def test_list_filters_and_limit(store: Path) -> None:
    _, by_actor = invoke("trace", "list", "--store", str(store), "--actor", "notify_customer")
    assert [line[:3] for line in by_actor[1:]] == ["aa1"]
    _, by_outcome = invoke("trace", "list", "--store", str(store), "--outcome", "dead_lettered")
    assert [line[:3] for line in by_outcome[1:]] == ["bb2"]
    _, limited = invoke("trace", "list", "--store", str(store), "--limit", "2")
    assert [line[:3] for line in limited[1:]] == ["ab3", "bb2"]
    code, _ = invoke("trace", "list", "--store", str(store), "--outcome", "failed")
    assert code == 2
    code, _ = invoke("trace", "list", "--store", str(store), "--limit", "0")
    assert code == 2


def test_list_without_a_store_says_how_to_get_one(tmp_path: Path) -> None:
    code, lines = invoke("trace", "list", "--store", str(tmp_path / "none.db"))
    assert code == 1
    assert lines[-1] == (
        f"Error: no trace store at {tmp_path / 'none.db'}: start `tracedq dev` (or run `tracedq demo`) to record traces"
    )


def test_show_draws_the_tree_from_a_prefix(store: Path) -> None:
    code, lines = invoke("trace", "show", "AA", "--store", str(store))  # case does not matter
    assert code == 0
    assert lines[0] == f"trace {'aa1'.ljust(32, '0')}  (1200.0 ms)"
    assert lines[1] == "  outcome success, 6 spans from svc"
    assert [line.split("|")[0].rstrip() for line in lines[2:]] == [
        "  POST /orders",
        "    send orders",
        "      process orders",
        "        send email",
        "          process email",
        "          process email",
    ]


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("zzzz", "Invalid value for 'TRACE_ID': 'zzzz' is not a trace id: 32 hex digits, or a prefix of one"),
        ("", "Invalid value for 'TRACE_ID': is empty: give a trace id (32 hex digits) or a prefix of one"),
        ("  ", "Invalid value for 'TRACE_ID': is empty: give a trace id (32 hex digits) or a prefix of one"),
        ("a" * 33, f"Invalid value for 'TRACE_ID': '{'a' * 33}' is not a trace id: 32 hex digits, or a prefix of one"),
    ],
)
def test_show_refuses_what_is_not_a_trace_id_as_usage(store: Path, argument: str, message: str) -> None:
    code, lines = invoke("trace", "show", argument, "--store", str(store))
    assert code == 2
    assert lines[-1] == f"Error: {message}"


def test_an_ambiguous_prefix_is_usage_and_names_the_candidates(store: Path) -> None:
    code, lines = invoke("trace", "show", "a", "--store", str(store))
    assert code == 2
    assert lines[-1] == (
        f"Error: Invalid value for TRACE_ID: 'a' is the start of several traces "
        f"({'aa1'.ljust(32, '0')}, {'ab3'.ljust(32, '0')}): give more digits"
    )


def test_no_match_without_jaeger_is_an_error_naming_the_store(store: Path) -> None:
    code, lines = invoke("trace", "show", "ffff", "--store", str(store))
    assert code == 1
    assert lines[-1] == f"Error: no trace ffff... in {store} (ask Jaeger with --jaeger)"
