"""Producers that are not tracedq follow ``docs/wire-format.md`` and the worker continues their trace.

The producers are the repository's examples, run as they are published: ``examples/node-producer`` (Node.js,
installed with ``npm ci`` from its lock file once per session) and ``examples/python-producer`` (pika and the
OpenTelemetry SDK, in a Python process that must not import any of our packages). Each publishes a
``register_user`` message to a real worker (``dramatiq actors``) in this session's own RabbitMQ vhost, and
exports its send span to the test's OTLP receiver, where the worker's spans arrive too.

Without node or npm the Node.js cases skip locally and fail on CI.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from opentelemetry.trace import SpanKind

from otlp_receiver import OtlpReceiver
from tests.environment.polling import wait_until
from tests.environment.processes import PROJECT_ROOT, ServiceProcess
from tests.environment.servers import ci_requires_services
from tests.environment.stack import Stack
from tests.received_spans import child, only

NODE_EXAMPLE = PROJECT_ROOT / "examples" / "node-producer"
PYTHON_EXAMPLE = PROJECT_ROOT / "examples" / "python-producer" / "publish.py"
WAIT = 60.0

# Runs the Python example as ``python publish.py ...`` would, then fails if anything of ours got imported
# (the venv's editable install would allow it): the example must stand on pika and OpenTelemetry alone.
_WITHOUT_OUR_CODE = """\
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    ours = {"actors", "api", "cli", "observability", "operations", "otlp_receiver", "services", "tests"}
    ours &= {m.split(".")[0] for m in sys.modules}
    assert not ours, f"the example imported {sorted(ours)}"
"""


@pytest.fixture(scope="session")
def node_example() -> Path:
    """``examples/node-producer`` with its ``node_modules`` installed by ``npm ci`` (once per session)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        message = "node and npm are needed to run examples/node-producer"
        if ci_requires_services():
            pytest.fail(f"{message} on CI")
        pytest.skip(message)
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_EXAMPLE, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"npm ci failed in {NODE_EXAMPLE}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return NODE_EXAMPLE


def _producer_argv(producer: str, request: pytest.FixtureRequest) -> list[str]:
    if producer == "node":
        example = request.getfixturevalue("node_example")
        return [str(shutil.which("node")), str(example / "publish.js")]
    return [sys.executable, "-I", "-c", _WITHOUT_OUR_CODE, str(PYTHON_EXAMPLE)]


def _run_producer(
    argv: list[str], flow_env: Stack, receiver: OtlpReceiver, service_name: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(Path.home()),
        "AMQP_URL": flow_env.broker_url,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": service_name,
    }
    return subprocess.run([*argv, *args], env=env, cwd="/", capture_output=True, text=True, timeout=60)


def _consumers(flow_env: Stack, queue: str) -> int:
    try:
        return flow_env.consumer_count(queue)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:  # not declared yet
            return 0
        raise


@pytest.mark.rabbitmq
@pytest.mark.timeout(180)
@pytest.mark.parametrize("producer", ["node", "python"])
def test_the_worker_continues_a_foreign_producers_trace(
    producer: str,
    request: pytest.FixtureRequest,
    flow_env: Stack,
    start_flow_worker: Callable[..., ServiceProcess],
    otlp_receiver: OtlpReceiver,
) -> None:
    argv = _producer_argv(producer, request)
    worker = start_flow_worker()
    # The worker declares the queues it consumes: until then a publish to "users" would be dropped.
    assert wait_until(lambda: _consumers(flow_env, "users") == 1, timeout=WAIT), worker.describe()
    payload = {"schema_version": 1, "user_id": f"{producer}-1", "email": "ada@example.com", "name": "Ada"}

    done = _run_producer(
        argv, flow_env, otlp_receiver, f"{producer}-producer", "users", "register_user", json.dumps(payload)
    )

    assert done.returncode == 0, f"{producer} producer failed:\n{done.stdout}\n{done.stderr}"
    ids = json.loads(done.stdout.strip().splitlines()[-1])
    message_id = ids["message_id"]

    def arrived(spans: list[Any]) -> bool:
        names = {(s.name, s.span_id) for s in spans}
        processed = any(
            s.name == "process users" and s.attributes.get("messaging.message.id") == message_id for s in spans
        )
        return processed and ("send users", ids["span_id"]) in names and any(n == "send email" for n, _ in names)

    assert otlp_receiver.wait_for(arrived, timeout=WAIT), (
        f"spans received: {sorted(s.name for s in otlp_receiver.spans)}; {producer} said {done.stderr}; "
        f"{worker.describe()}"
    )
    spans = otlp_receiver.spans
    send = only(spans, "send users", ids["trace_id"])
    assert send.span_id == ids["span_id"]
    assert send.kind is SpanKind.PRODUCER
    assert send.parent_span_id == ""
    assert send.resource.get("service.name") == f"{producer}-producer"

    process = only(spans, "process users", ids["trace_id"])
    assert process.trace_id == ids["trace_id"]
    assert process.parent_span_id == ids["span_id"]
    assert process.kind is SpanKind.CONSUMER
    assert process.attributes["messaging.message.id"] == message_id
    assert process.attributes["dramatiq.message.outcome"] == "success"
    assert "dramatiq.trace_context.invalid" not in process.attributes
    # ... and the trace goes on from the worker: the welcome email it sends is in the same trace.
    assert child(spans, process, "send email").trace_id == ids["trace_id"]


@pytest.mark.rabbitmq
@pytest.mark.timeout(120)
@pytest.mark.parametrize("producer", ["node", "python"])
def test_the_examples_report_a_publish_to_a_queue_nobody_declared(
    producer: str, request: pytest.FixtureRequest, flow_env: Stack, otlp_receiver: OtlpReceiver
) -> None:
    argv = _producer_argv(producer, request)
    queue = f"userz_{uuid.uuid4().hex[:8]}"  # a misspelt "users"

    done = _run_producer(argv, flow_env, otlp_receiver, f"{producer}-producer", queue, "register_user", "{}")

    assert done.returncode == 1, f"{done.stdout}\n{done.stderr}"
    assert done.stdout == ""
    assert re.fullmatch(
        rf"RabbitMQ returned message [0-9a-f-]{{36}} \(312 NO_ROUTE\): no queue named '{queue}' exists\. "
        r"Queues are declared by the workers \(and Python producers\); check the name, or start a worker first\.\n",
        done.stderr,
    ), done.stderr


@pytest.mark.rabbitmq
def test_a_publish_to_an_undeclared_queue_is_confirmed_and_dropped_unless_mandatory(flow_env: Stack) -> None:
    """What docs/wire-format.md warns about, with raw pika: RabbitMQ confirms it; only ``mandatory`` says no."""
    queue = f"userz_{uuid.uuid4().hex[:8]}"
    body = json.dumps({"queue_name": queue, "actor_name": "register_user", "args": [{}], "kwargs": {}, "options": {}})
    connection = flow_env.connect()
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(exchange="", routing_key=queue, body=body)  # confirmed: no error at all

        with pytest.raises(pika.exceptions.UnroutableError) as returned:
            channel.basic_publish(exchange="", routing_key=queue, body=body, mandatory=True)
        [bounced] = returned.value.messages
        assert (bounced.method.reply_code, bounced.method.reply_text) == (312, "NO_ROUTE")
        assert bounced.body == body.encode()

        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as missing:
            connection.channel().queue_declare(queue, passive=True)
        assert missing.value.reply_code == 404  # the first message went nowhere: no queue holds it
    finally:
        connection.close()


def test_the_documented_trap_injects_an_empty_carrier(node_example: Path) -> None:
    """docs/wire-format.md's warning, run: sdk-trace-base 2.x alone injects {}; the example's way does not."""
    script = """
const { context, propagation, trace } = require('@opentelemetry/api');
const { W3CTraceContextPropagator } = require('@opentelemetry/core');
const { BasicTracerProvider } = require('@opentelemetry/sdk-trace-base');
const tracer = new BasicTracerProvider().getTracer('trap');
const carriers = {};
const inject = (name, useSpan) => tracer.startActiveSpan('send', (span) => {
  carriers[name] = {};
  propagation.inject(useSpan ? trace.setSpan(context.active(), span) : context.active(), carriers[name]);
  span.end();
});
inject('no_propagator', true);
propagation.setGlobalPropagator(new W3CTraceContextPropagator());
inject('no_context_manager', false);
inject('from_the_span', true);
process.stdout.write(JSON.stringify(carriers));
"""
    done = subprocess.run(
        [str(shutil.which("node")), "-e", script], cwd=node_example, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    carriers = json.loads(done.stdout)
    assert carriers["no_propagator"] == {}
    assert carriers["no_context_manager"] == {}
    assert list(carriers["from_the_span"]) == ["traceparent"]
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", carriers["from_the_span"]["traceparent"])
