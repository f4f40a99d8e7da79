"""Zero-code setup: ``opentelemetry-instrument dramatiq app`` traces an app that never imports our code.

The app module is written into ``tmp_path``: a ``RabbitmqBroker`` on a vhost of the test's own and one
actor that writes a file. A producer script and the worker both run under ``opentelemetry-instrument``
from this venv, configured only through ``OTEL_*``, exporting OTLP/HTTP to the in-test receiver. Our
instrumentor reaches them through its ``opentelemetry_instrumentor`` entry point, the distro sets up the SDK.

The batch processor's schedule delay is far longer than the test, so every span arrives through a flush at
exit: atexit in the producer, ``Tracing.after_worker_shutdown`` in the forked worker processes, which leave
through ``os._exit``. The send span of each message, in the producer, must be the parent of its process
span, in a worker process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.trace import SpanKind

from otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.environment.processes import ServiceProcess
from tests.environment.vhost import VhostProbe, own_vhost

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(60)]

BIN = Path(sys.prefix) / "bin"
APP = "zero_code_app"
QUEUE = "zero_code"
MESSAGES = 3

APP_SOURCE = '''\
"""A plain Dramatiq app: nothing here knows about tracing."""

from pathlib import Path

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

broker = RabbitmqBroker(url={url!r})
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="touch", queue_name={queue!r})
def touch(name):
    Path({done!r}, name).write_text("done")
'''

PRODUCER_SOURCE = f"""\
from {APP} import touch

for i in range({MESSAGES}):
    touch.send(f"m{{i}}")
"""


@pytest.fixture
def vhost() -> Iterator[VhostProbe]:
    with own_vhost("tracedq_otel_instrument") as name:
        yield VhostProbe(name)


def otel_environment(tmp_path: Path, receiver: OtlpReceiver, service_name: str) -> dict[str, str]:
    """The environment of a process under ``opentelemetry-instrument``: only OTEL_* says where spans go."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(tmp_path),
        OTEL_SERVICE_NAME=service_name,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",  # the distro's default is gRPC; the receiver speaks HTTP
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_BSP_SCHEDULE_DELAY="600000",  # nothing leaves before the flush at exit
    )
    return env


def test_opentelemetry_instrument_traces_an_app_that_never_imports_us(
    tmp_path: Path, vhost: VhostProbe, otlp_receiver: OtlpReceiver
) -> None:
    """Each "send zero_code" PRODUCER span, in the producer, is the parent of a "process zero_code" CONSUMER span."""
    done = tmp_path / "done"
    done.mkdir()
    (tmp_path / f"{APP}.py").write_text(APP_SOURCE.format(url=vhost.broker_url, queue=QUEUE, done=str(done)))
    (tmp_path / "produce.py").write_text(PRODUCER_SOURCE)
    instrument = str(BIN / "opentelemetry-instrument")

    worker_env = otel_environment(tmp_path, otlp_receiver, "zero-code-worker")
    worker = ServiceProcess([instrument, "dramatiq", APP], worker_env, tmp_path / "logs", cwd=tmp_path).start()
    try:
        producer = subprocess.run(
            [instrument, sys.executable, "produce.py"],
            cwd=tmp_path,
            env=otel_environment(tmp_path, otlp_receiver, "zero-code-producer"),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert producer.returncode == 0, producer.stderr
        deadline = time.monotonic() + 30
        while len(list(done.iterdir())) < MESSAGES:
            assert worker.running, worker.describe()
            assert time.monotonic() < deadline, f"actor ran {len(list(done.iterdir()))} times\n{worker.describe()}"
            time.sleep(0.1)
        assert otlp_receiver.spans_named(f"process {QUEUE}") == [], "exported before shutdown: the flush is untested"
        wait_until_sigterm_is_caught(worker, deadline=time.monotonic() + 15)
        assert worker.terminate(timeout=30) == 0, worker.describe()
    finally:
        worker.kill()

    assert otlp_receiver.wait_for(lambda spans: len(spans) >= 2 * MESSAGES, timeout=10), worker.describe()
    assert otlp_receiver.errors == []
    sends = otlp_receiver.spans_named(f"send {QUEUE}")
    processes = otlp_receiver.spans_named(f"process {QUEUE}")
    assert len(sends) == MESSAGES, worker.describe()
    assert len(processes) == MESSAGES, worker.describe()
    by_id = {span.span_id: span for span in sends}
    for process in processes:
        send = by_id[process.parent_span_id]
        assert process.trace_id == send.trace_id
        assert_span(send, SpanKind.PRODUCER, "zero-code-producer")
        assert_span(process, SpanKind.CONSUMER, "zero-code-worker")
    assert {span.attributes["messaging.message.id"] for span in processes} == {
        span.attributes["messaging.message.id"] for span in sends
    }


def wait_until_sigterm_is_caught(worker: ServiceProcess, deadline: float) -> None:
    """Wait for Dramatiq's main process to install its SIGTERM handler (``SigCgt`` in ``/proc/<pid>/status``).

    Until then SIGTERM's default action applies. Dramatiq blocks the signal in its main thread while its
    workers boot, but under ``opentelemetry-instrument`` the SDK's export thread already runs and does not
    block it: the kernel delivers SIGTERM there and the whole process dies at once, logs and all.
    """
    assert worker.proc is not None
    status = Path(f"/proc/{worker.proc.pid}/status")
    while True:
        caught = next(line for line in status.read_text().splitlines() if line.startswith("SigCgt:"))
        if int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)):
            return
        assert time.monotonic() < deadline, f"no SIGTERM handler yet\n{worker.describe()}"
        time.sleep(0.05)


def assert_span(span: ReceivedSpan, kind: SpanKind, service_name: str) -> None:
    assert span.kind == kind
    assert span.attributes["messaging.system"] == "rabbitmq"
    assert span.attributes["messaging.destination.name"] == QUEUE
    assert span.resource["service.name"] == service_name
