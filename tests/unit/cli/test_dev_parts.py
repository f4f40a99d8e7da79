"""The parts of ``tracedq dev`` that decide before anything starts, and its helpers' storage."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from actors.settings import DEFAULT_BROKER_URL
from cli.dev.config import DevConfig
from cli.dev.lock import AlreadyRunning, DevLock
from cli.dev.mailbox import read_mailbox, store_mail
from cli.dev.output import Output
from cli.dev.preflight import broker_problem, port_problems
from cli.dev.services import plan, workers_beating
from cli.dev.smtp_sink import mask
from cli.dev_commands import DEFAULT_BROKER_URL as CLI_DEFAULT_BROKER_URL
from tests.environment.ports import free_port, listening_port
from worker_health.heartbeat_files import write_heartbeat


@pytest.fixture
def listening() -> Iterator[int]:
    """A port another process (this one) listens on."""
    with listening_port() as port:
        yield port


def config(tmp_path: Path, **kwargs: int) -> DevConfig:
    ports = {"api_port": free_port(), "smtp_port": free_port(), "collector_port": free_port(), **kwargs}
    return DevConfig(broker_url="amqp://guest@127.0.0.1:1/", database_url="sqlite://", state_dir=tmp_path, **ports)


def test_a_taken_port_is_named_with_its_service_and_option(tmp_path: Path, listening: int) -> None:
    assert port_problems(config(tmp_path)) == []
    assert port_problems(config(tmp_path, api_port=listening)) == [
        f"port {listening} (api) is not free on 127.0.0.1: another process listens there; pass --api-port"
    ]
    port = free_port()
    assert port_problems(config(tmp_path, smtp_port=port, collector_port=port)) == [
        f"port {port} is given to smtp and collector: each needs its own"
    ]


def test_an_unreachable_broker_is_one_sentence_without_the_password() -> None:
    problem = broker_problem("amqp://guest:secret@127.0.0.1:1/")
    assert problem is not None
    assert problem.startswith("RabbitMQ is unreachable at amqp://guest:***@127.0.0.1:1/ (")
    assert problem.endswith("): start it, or set BROKER_URL / --broker")
    assert "secret" not in problem


def test_a_second_run_on_the_same_state_is_refused(tmp_path: Path) -> None:
    with DevLock(tmp_path / "dev.lock"):
        with pytest.raises(AlreadyRunning) as refused, DevLock(tmp_path / "dev.lock"):
            pass
        assert str(refused.value) == (
            f"tracedq dev is already running on {tmp_path.resolve()} (pid {os.getpid()}): "
            f"stop it first (Ctrl-C in its terminal, or kill {os.getpid()})"
        )
    with DevLock(tmp_path / "dev.lock"):  # released when the first run ended
        pass


def test_worker_readiness_reads_the_heartbeats_the_workers_write(tmp_path: Path) -> None:
    assert not workers_beating(tmp_path, 4242, 1)
    write_heartbeat(tmp_path, pid=4243, main_pid=4242, main_start=None, state="running")
    write_heartbeat(tmp_path, pid=5001, main_pid=5000, main_start=None, state="running")  # another tree
    assert workers_beating(tmp_path, 4242, 1)
    assert not workers_beating(tmp_path, 4242, 2)
    write_heartbeat(tmp_path, pid=4243, main_pid=4242, main_start=None, state="stopping")
    assert not workers_beating(tmp_path, 4242, 1)


def test_the_cli_default_broker_is_the_settings_default() -> None:
    assert CLI_DEFAULT_BROKER_URL == DEFAULT_BROKER_URL


def test_services_start_in_order_with_our_telemetry_settings(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    services = plan(cfg, {"OTEL_SERVICE_NAME": "theirs", "OTEL_TRACES_EXPORTER": "console", "HOME": "/home/x"})
    assert [s.name for s in services] == ["collector", "smtp", "worker", "scheduler", "api"]
    by_name = {s.name: s.env for s in services}
    assert by_name["collector"]["OTEL_SDK_DISABLED"] == "true"
    for name in ("worker", "scheduler", "api"):
        env = by_name[name]
        assert env["OTEL_SERVICE_NAME"] == f"tracedq-{name}"
        assert env["OTEL_TRACES_EXPORTER"] == env["OTEL_LOGS_EXPORTER"] == "otlp"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://127.0.0.1:{cfg.collector_port}"
        assert env["SMTP_PORT"] == str(cfg.smtp_port)
        assert env["HOME"] == "/home/x"
        assert "OTEL_SDK_DISABLED" not in env
    assert [s.name for s in plan(DevConfig("amqp://x/", "sqlite://", tmp_path, scheduler=False), {})] == [
        "collector",
        "smtp",
        "worker",
        "api",
    ]


def test_mailbox_keeps_the_newest_messages(tmp_path: Path) -> None:
    for n in range(5):
        message = EmailMessage()
        message["To"], message["Subject"] = f"user{n}@example.com", f"Order {n}: reserved"
        message.set_content(f"Your order {n} is reserved.")
        store_mail(tmp_path, message.as_bytes(), limit=3)
    mails = read_mailbox(tmp_path)
    assert [(m.to, m.subject, m.body) for m in mails] == [
        (f"user{n}@example.com", f"Order {n}: reserved", f"Your order {n} is reserved.") for n in (4, 3, 2)
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(m.path.name for m in mails)  # no temp file left


def test_the_sink_masks_the_recipient() -> None:
    assert mask("ada@example.com") == "a***@example.com"
    assert mask("nobody") == "***"


def test_output_prefixes_align_and_are_plain_off_a_tty() -> None:
    stream = io.StringIO()
    output = Output(stream, ["collector", "api"], colour=False)
    output.say("ready")
    output.line("api", "INFO: started\n")
    assert stream.getvalue().splitlines() == ["dev       | ready", "api       | INFO: started"]
    coloured = io.StringIO()
    Output(coloured, ["api"], colour=True).line("api", "x")
    assert coloured.getvalue() == "\033[32mapi | \033[0mx\n"
