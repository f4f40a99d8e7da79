"""No actor argument in any log line, exported span or dead letter's headers unless capture is on (issue 13 §2).

A real worker process (``dramatiq tests.integration.personal_data_app``, our production broker) meets every failure
path with a recognisable email address in the message: an error retried then dead-lettered (the exception also
recorded by the SDK on an inner span), a time limit, an exception in ``throws``, an invalid payload, an unknown
actor, a body that is not a message. Its stdout/stderr, every OTLP trace request body (raw protobuf) and log record,
and the headers of every dead letter are searched for the address. With ``TRACE_CAPTURE_ARGS=true`` the same
search finds it: the search can fail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from otlp_receiver import OtlpReceiver
from tests.environment.polling import wait_until
from tests.environment.processes import ServiceProcess
from tests.environment.sender import FlowSender
from tests.environment.stack import Stack

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(180)]

EMAIL = "grace.hopper.4242@example.org"
APP = "tests.integration.personal_data_app"  # run by the worker; never imported here (it declares actors)
QUEUE = "personal_data"  # its actors' queue
_DEAD_HERE = 5  # fails_twice, too_slow, refused, the unknown actor, the undecodable body


def _dead_letter_headers(env: Stack, queue: str) -> list[dict[str, Any]]:
    connection = env.connect()
    try:
        channel = connection.channel()
        headers = []
        while True:
            method, properties, _ = channel.basic_get(queue)
            if method is None:
                return headers
            headers.append(dict(properties.headers or {}))
    finally:
        connection.close()  # unacked: the letters stay


@pytest.mark.parametrize("capture", [False, True], ids=["capture_off", "capture_on"])
def test_no_failure_path_logs_or_exports_an_actor_argument(
    capture: bool,
    flow_env: Stack,
    flow_sender: FlowSender,
    start_flow_worker: Callable[..., ServiceProcess],
    otlp_receiver: OtlpReceiver,
) -> None:
    settings = {"OTEL_LOGS_EXPORTER": "otlp", **({"TRACE_CAPTURE_ARGS": "true"} if capture else {})}
    # Without rabbitmqctl the flow tests share the default vhost: start from empty queues of our own.
    flow_env.purge([QUEUE, f"{QUEUE}.DQ", f"{QUEUE}.XQ", "orders.XQ"])
    flow_sender.declare(QUEUE)
    for actor in ("fails_twice", "too_slow", "refused"):
        flow_sender.send(QUEUE, actor, EMAIL)
    flow_sender.send(QUEUE, "nobody_declared_this", EMAIL)
    flow_sender.send("orders", "place_order", {"order_id": "o-pii", "customer_email": EMAIL, "lines": "none"})
    connection = flow_env.connect()
    try:
        connection.channel().basic_publish("", QUEUE, f"not a message, from {EMAIL}".encode())
    finally:
        connection.close()

    worker = start_flow_worker(module=APP, **settings)
    assert wait_until(
        lambda: flow_env.ready_count(f"{QUEUE}.XQ") == _DEAD_HERE and flow_env.ready_count("orders.XQ") == 1, 90
    ), (flow_env.broker_url, flow_env.ready_count(f"{QUEUE}.XQ"), flow_env.ready_count("orders.XQ"), worker.describe())
    assert worker.terminate(timeout=60) == 0, worker.describe()  # a graceful stop flushes spans and logs

    output = worker.output()
    spans = b"".join(otlp_receiver.trace_bodies)
    logs = repr(otlp_receiver.logs)
    headers = repr(_dead_letter_headers(flow_env, f"{QUEUE}.XQ") + _dead_letter_headers(flow_env, "orders.XQ"))

    # Every path really ran and was logged and traced.
    names = {span.name for span in otlp_receiver.spans}
    assert {f"process {QUEUE}", "process orders", "mail customer"} <= names, names
    errors = {span.attributes.get("error.type") for span in otlp_receiver.spans}
    assert "dramatiq.middleware.time_limit.TimeLimitExceeded" in errors, errors
    assert "Failed to process message fails_twice" in output and "Retrying message" in output
    assert "tracedq-dead-letter-reason" in headers and "'throws'" in headers and "'undecodable'" in headers
    assert otlp_receiver.logs, "no log record was exported"

    found = {
        "worker output": EMAIL in output,
        "exported spans": EMAIL.encode() in spans,
        "exported logs": EMAIL in logs,
        "dead-letter headers": EMAIL in headers,
    }
    if capture:  # the same search finds the address once it may be shown
        assert found["worker output"] and found["exported spans"], found
    else:
        assert found == dict.fromkeys(found, False), found
        assert "[hidden: may hold personal data]" in output
