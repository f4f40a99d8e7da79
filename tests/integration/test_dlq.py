"""``tracedq dlq`` against a real RabbitMQ: dead letters made by a real Dramatiq worker, read, replayed, purged."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dramatiq
import pika
import pytest
from click.testing import CliRunner, Result
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import default_middleware
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cli.main import tracedq
from observability import Tracing, install
from operations import replay as replaying
from tests.environment.polling import wait_until
from tests.environment.vhost import VhostProbe, own_vhost
from tests.spans import named, one, trace_id

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(90)]


@dataclass
class DeadQueue:
    """A unique queue whose actor fails until ``succeed`` is set, and the ids of the messages it killed."""

    name: str
    url: str
    broker: RabbitmqBroker
    actor: dramatiq.Actor[..., Any]
    retried_actor: dramatiq.Actor[..., Any]
    state: dict[str, Any]

    def depth(self, queue: str) -> int:
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
        finally:
            connection.close()

    @property
    def xq_depth(self) -> int:
        return self.depth(f"{self.name}.XQ")

    def kill(self, count: int, span_exporter: InMemorySpanExporter, *, retried: int = 0) -> list[str]:
        """Send ``count`` messages (plus ``retried`` to the actor that retries once) and wait for the XQ."""
        ids = [self.actor.send(i).message_id for i in range(count)]
        ids += [self.retried_actor.send(i).message_id for i in range(retried)]
        worker = dramatiq.Worker(self.broker, worker_timeout=100, worker_threads=2)
        worker.start()
        try:
            assert wait_until(
                lambda: len(named(span_exporter.get_finished_spans(), f"nack {self.name}")) == len(ids),
                30,
                interval=0.01,
            )
        finally:
            worker.stop()
        assert wait_until(lambda: self.xq_depth == len(ids), 10, interval=0.01)
        return ids


@pytest.fixture
def dead_queue(span_exporter: InMemorySpanExporter) -> Iterator[DeadQueue]:
    """A queue in a vhost of the test's own, whose actor fails (deleted with the vhost at the end)."""
    with own_vhost("tracedq_dlq") as vhost:
        url = VhostProbe(vhost).broker_url
        name = f"dlq_{uuid.uuid4().hex[:12]}"
        broker = RabbitmqBroker(
            url=url, confirm_delivery=True, middleware=[factory() for factory in default_middleware]
        )
        install(broker, Tracing())
        broker.emit_after("process_boot")
        state: dict[str, Any] = {"succeed": False, "done": []}

        def work(i: int) -> None:
            if not state["succeed"]:
                raise RuntimeError(f"cannot do {i}")
            state["done"].append(i)

        actor = dramatiq.actor(actor_name=f"work_{name}", queue_name=name, broker=broker, max_retries=0)(work)
        retried_actor = dramatiq.actor(
            actor_name=f"retried_{name}", queue_name=name, broker=broker, max_retries=1, min_backoff=10, max_backoff=20
        )(work)
        try:
            yield DeadQueue(name, url, broker, actor, retried_actor, state)
        finally:
            broker.close()


def run(queue: DeadQueue, *args: str, input: str | None = None, columns: int = 80) -> Result:
    """``tracedq dlq ARGS --broker <the queue's vhost>``, its output piped (not a terminal), ``columns`` wide."""
    return CliRunner().invoke(
        tracedq, ["dlq", *args, "--broker", queue.url], input=input, env={"COLUMNS": str(columns)}
    )


def _traceparent_trace(process_span: Any) -> str:
    return format(trace_id(process_span), "032x")


def test_list_shows_each_dead_letter_with_reason_age_and_trace_and_leaves_them(
    dead_queue: DeadQueue, span_exporter: InMemorySpanExporter
) -> None:
    """Piped and 80 columns wide: every column readable (short ids, the reason wrapped), nothing cut to '…'."""
    ids = dead_queue.kill(2, span_exporter, retried=1)
    process_spans = named(span_exporter.get_finished_spans(), f"process {dead_queue.name}")
    trace_of = {s.attributes["messaging.message.id"]: format(trace_id(s), "032x") for s in process_spans}

    result = run(dead_queue, "list", dead_queue.name)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80, result.output
    assert "…" not in result.output and "..." not in result.output
    assert lines[0].rstrip() == f"{dead_queue.name}.XQ: 3 message(s)"
    assert lines[2].split() == ["id", "actor", "retries", "age", "trace", "reason"]
    rows = {line.split()[0]: line for line in lines[4:] if line.strip() and len(line.split()[0]) == 8}
    assert sorted(rows) == sorted(message_id[:8] for message_id in ids)
    for message_id in ids:
        assert f" {trace_of[message_id][:8]} " in rows[message_id[:8]]
    # Retried once: the stored traceback names the exception. First-attempt deaths have no traceback.
    wide = run(dead_queue, "list", dead_queue.name, columns=120).output
    assert wide.count("RuntimeError: cannot do 0") == 1 and wide.count("rejected (no traceback stored)") == 2
    assert f"retried_{dead_queue.name}" in wide and f"work_{dead_queue.name}" in wide
    assert dead_queue.xq_depth == 3  # read-only


def test_list_json_prints_one_object_per_message(dead_queue: DeadQueue, span_exporter: InMemorySpanExporter) -> None:
    [message_id] = dead_queue.kill(0, span_exporter, retried=1)
    [trace] = {
        format(trace_id(s), "032x") for s in named(span_exporter.get_finished_spans(), f"process {dead_queue.name}")
    }

    result = run(dead_queue, "list", dead_queue.name, "--json")

    assert result.exit_code == 0, result.output
    [line] = result.output.splitlines()
    record = json.loads(line)
    age = record.pop("age_seconds")
    assert isinstance(age, float) and age >= 0
    assert isinstance(record.pop("message_timestamp"), int)
    assert record == {
        "message_id": message_id,
        "actor": f"retried_{dead_queue.name}",
        "queue": dead_queue.name,
        "retries": 1,
        "reason": "RuntimeError: cannot do 0",
        "trace_id": trace,
        "trace_url": f"http://localhost:16686/trace/{trace}",
    }


def test_list_tolerates_an_undecodable_body(dead_queue: DeadQueue, span_exporter: InMemorySpanExporter) -> None:
    dead_queue.kill(1, span_exporter)
    connection = pika.BlockingConnection(pika.URLParameters(dead_queue.url))
    connection.channel().basic_publish("", f"{dead_queue.name}.XQ", b"\x00not json{")
    connection.close()
    assert wait_until(lambda: dead_queue.xq_depth == 2, 10, interval=0.01)

    result = run(dead_queue, "list", dead_queue.name)

    assert result.exit_code == 0, result.output
    assert "undecodable" in result.output
    assert dead_queue.xq_depth == 2


def test_show_prints_one_message_in_full(dead_queue: DeadQueue, span_exporter: InMemorySpanExporter) -> None:
    [message_id] = dead_queue.kill(0, span_exporter, retried=1)

    for given in (message_id, message_id[:8]):  # the full id, or the prefix the table shows
        result = run(dead_queue, "show", dead_queue.name, given)
        assert result.exit_code == 0, result.output
        assert result.output.splitlines()[0] == f"retried_{dead_queue.name} {message_id}"
        assert f'"message_id": "{message_id}"' in result.output
        assert "Traceback (most recent call last)" in result.output
        assert "/trace/" in result.output
    shown = json.loads(run(dead_queue, "show", dead_queue.name, message_id[:8], "--json").output)
    assert (shown["message_id"], shown["message"]["message_id"]) == (message_id, message_id)
    assert run(dead_queue, "show", dead_queue.name, "no-such-id").exit_code == 1
    assert dead_queue.xq_depth == 1


def test_show_refuses_an_ambiguous_or_empty_prefix(dead_queue: DeadQueue, span_exporter: InMemorySpanExporter) -> None:
    """A prefix two ids share is a usage error listing both; an exact id wins over longer ones."""
    dead_queue.kill(1, span_exporter)
    connection = pika.BlockingConnection(pika.URLParameters(dead_queue.url))
    for message_id in ("abc", "abc-2"):
        body = {"queue_name": dead_queue.name, "actor_name": "x", "args": [], "kwargs": {}, "options": {}}
        connection.channel().basic_publish("", f"{dead_queue.name}.XQ", json.dumps({**body, "message_id": message_id}))
    connection.close()
    assert wait_until(lambda: dead_queue.xq_depth == 3, 10, interval=0.01)

    ambiguous = run(dead_queue, "show", dead_queue.name, "ab")
    assert ambiguous.exit_code == 2
    assert "Error: 'ab' matches 2 messages; give more of the id:\n  abc  x\n  abc-2  x\n" in ambiguous.output
    exact = run(dead_queue, "show", dead_queue.name, "abc")
    assert exact.exit_code == 0 and exact.output.splitlines()[0] == "x abc"
    empty = run(dead_queue, "show", dead_queue.name, "")
    assert empty.exit_code == 2 and "give a message id or a prefix of one" in empty.output
    assert dead_queue.xq_depth == 3


def test_replay_all_sends_them_back_in_a_new_trace_linked_to_the_old_one(
    dead_queue: DeadQueue, span_exporter: InMemorySpanExporter
) -> None:
    ids = dead_queue.kill(3, span_exporter)
    original = {
        s.attributes["messaging.message.id"]: s
        for s in named(span_exporter.get_finished_spans(), f"process {dead_queue.name}")
    }
    span_exporter.clear()

    result = run(dead_queue, "replay", dead_queue.name, "--all")

    assert result.exit_code == 0, result.output
    assert "replayed 3 of 3" in result.output
    assert dead_queue.xq_depth == 0
    assert dead_queue.depth(dead_queue.name) == 3

    replays = named(span_exporter.get_finished_spans(), f"replay {dead_queue.name}")
    assert len(replays) == 3
    dead_queue.state["succeed"] = True
    worker = dramatiq.Worker(dead_queue.broker, worker_timeout=100, worker_threads=2)
    worker.start()
    try:
        assert wait_until(
            lambda: len(named(span_exporter.get_finished_spans(), f"process {dead_queue.name}")) == 3, 30, interval=0.01
        )
    finally:
        worker.stop()
    assert sorted(dead_queue.state["done"]) == [0, 1, 2]
    assert dead_queue.xq_depth == 0

    processed = named(span_exporter.get_finished_spans(), f"process {dead_queue.name}")
    for message_id in ids:
        replay = next(s for s in replays if s.attributes["messaging.message.id"] == message_id)
        old = original[message_id]
        assert replay.parent is None
        [link] = replay.links
        assert link.context.trace_id == trace_id(old)
        assert replay.attributes["dramatiq.replayed_from_trace"] == format(trace_id(old), "032x")
        process = next(s for s in processed if s.attributes["messaging.message.id"] == message_id)
        assert trace_id(process) == trace_id(replay) != trace_id(old)
        assert process.attributes["dramatiq.message.retries"] == 0
        assert process.attributes["dramatiq.message.outcome"] == "success"


def test_replayed_message_body_is_reset(dead_queue: DeadQueue, span_exporter: InMemorySpanExporter) -> None:
    [message_id] = dead_queue.kill(0, span_exporter, retried=1)
    old_trace = _traceparent_trace(one(span_exporter.get_finished_spans(), f"nack {dead_queue.name}"))

    assert run(dead_queue, "replay", dead_queue.name, "--id", message_id).exit_code == 0

    connection = pika.BlockingConnection(pika.URLParameters(dead_queue.url))
    method, properties, body = connection.channel().basic_get(dead_queue.name, auto_ack=True)
    connection.close()
    assert method is not None
    assert properties.delivery_mode == 2
    message = json.loads(body)
    assert message["message_id"] == message_id
    options = message["options"]
    assert options["retries"] == 0
    assert "traceback" not in options and "requeue_timestamp" not in options
    assert options["replayed_from_trace"] == old_trace
    assert options["trace_context"]["traceparent"].split("-")[1] != old_trace


def test_replay_selects_by_id_and_actor_and_dry_run_changes_nothing(
    dead_queue: DeadQueue, span_exporter: InMemorySpanExporter
) -> None:
    ids = dead_queue.kill(2, span_exporter, retried=1)

    dry = run(dead_queue, "replay", dead_queue.name, "--all", "--dry-run")
    assert dry.exit_code == 0, dry.output
    *each, summary = dry.output.splitlines()  # no progress bar: a dry run replays nothing
    assert sorted(each) == sorted(f"would replay {message_id} -> {dead_queue.name}" for message_id in ids)
    assert summary == f"would replay 3 of 3 read from {dead_queue.name}.XQ; 0 failed, 0 skipped"
    assert dead_queue.xq_depth == 3
    assert dead_queue.depth(dead_queue.name) == 0

    assert run(dead_queue, "replay", dead_queue.name).exit_code == 2  # nothing selected

    by_id = run(dead_queue, "replay", dead_queue.name, "--id", ids[0])
    assert by_id.exit_code == 0, by_id.output
    assert dead_queue.xq_depth == 2 and dead_queue.depth(dead_queue.name) == 1

    by_actor = run(dead_queue, "replay", dead_queue.name, "--actor", f"retried_{dead_queue.name}")
    assert by_actor.exit_code == 0, by_actor.output
    assert "replayed 1 of 2" in by_actor.output
    assert dead_queue.xq_depth == 1 and dead_queue.depth(dead_queue.name) == 2

    assert run(dead_queue, "replay", dead_queue.name, "--id", "no-such-id").exit_code == 1


def test_purge_asks_unless_yes_and_empties_the_xq(dead_queue: DeadQueue, span_exporter: InMemorySpanExporter) -> None:
    dead_queue.kill(3, span_exporter)

    declined = run(dead_queue, "purge", dead_queue.name, input="n\n")
    assert declined.exit_code == 1
    assert declined.output == f"Delete 3 message(s) in {dead_queue.name}.XQ for good? [y/N]: n\nAborted!\n"
    assert dead_queue.xq_depth == 3

    result = run(dead_queue, "purge", dead_queue.name, "--yes")
    assert result.exit_code == 0, result.output
    assert "purged 3" in result.output
    assert dead_queue.xq_depth == 0


def test_a_crash_mid_replay_loses_nothing(
    dead_queue: DeadQueue, span_exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = dead_queue.kill(5, span_exporter)
    real_publish: Callable[..., None] = replaying.publish
    calls = []

    def crashing_publish(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        real_publish(*args, **kwargs)

    monkeypatch.setattr(replaying, "publish", crashing_publish)

    result = run(dead_queue, "replay", dead_queue.name, "--all")

    assert result.exit_code == 1
    assert "simulated crash" in result.output
    assert wait_until(lambda: dead_queue.xq_depth + dead_queue.depth(dead_queue.name) == len(ids), 10, interval=0.01)
    assert dead_queue.depth(dead_queue.name) == 2
    assert dead_queue.xq_depth == 3

    monkeypatch.setattr(replaying, "publish", real_publish)
    again = run(dead_queue, "replay", dead_queue.name, "--all")
    assert again.exit_code == 0, again.output
    assert dead_queue.xq_depth == 0 and dead_queue.depth(dead_queue.name) == len(ids)
