"""A real ``dramatiq`` worker tree with :class:`worker_health.heartbeat.Heartbeat`: heartbeats, the probe, one endpoint.

The tree is ``dramatiq --skip-logging tests.integration.health_broker -p 2 -t 1``: ``actors.broker``'s broker
plus the middleware, configured through test-only environment variables (see that module). Every process
the test starts is in its own session and SIGKILLed as a group at teardown; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pika
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.environment.database import migrated_sqlite_url
from tests.environment.polling import wait_until
from tests.environment.ports import free_port, listening_port
from tests.environment.processes import PROJECT_ROOT, ServiceProcess, proc_stat
from tests.environment.servers import RABBITMQ_URL, require_rabbitmq
from tests.environment.vhost import VhostProbe, own_vhost
from tests.environment.worker import dramatiq_argv
from tests.tcp_proxy import TcpProxy
from worker_health.heartbeat_files import assess, read_heartbeats

pytestmark = pytest.mark.rabbitmq

INTERVAL = 0.25


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting to be reaped."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def _children(pid: int) -> set[int]:
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            children.update(int(child) for child in (task / "children").read_text().split())
    return children


def _listeners(port: int) -> set[str]:
    """Socket inodes listening on ``port`` (any address, IPv4 or IPv6) in this network namespace."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    inodes.add(fields[9])
    return inodes


def _owners(inode: str, pids: set[int]) -> set[int]:
    owners = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == f"socket:[{inode}]":
                        owners.add(pid)
    return owners


class WorkerTree(ServiceProcess):
    """The worker tree of ``tests.integration.health_broker`` in its own session, output in files; started."""

    def __init__(self, tmp_path: Path, port: int) -> None:
        self.heartbeat_dir = tmp_path / "heartbeats"
        self.port = port
        env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "LOG_", "TRACE_"))}
        env.update(
            BROKER_URL=RABBITMQ_URL,
            DATABASE_URL=migrated_sqlite_url(tmp_path / "health.db"),
            OTEL_TRACES_EXPORTER="none",
            LOG_FORMAT="json",
            TRACEDQ_TEST_HEARTBEAT_DIR=str(self.heartbeat_dir),
            TRACEDQ_TEST_HEARTBEAT_INTERVAL=str(INTERVAL),
            TRACEDQ_TEST_HEALTH_PORT=str(port),
            TRACEDQ_TEST_HEALTH_MAX_AGE="5",
        )
        super().__init__(dramatiq_argv(processes=2, threads=1, module="tests.integration.health_broker"), env, tmp_path)
        self.start()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def worker_pids(self) -> set[int]:
        return {record.pid for record in read_heartbeats(self.heartbeat_dir)}

    def wait_for_workers(self, count: int = 2, timeout: float = 60) -> set[int]:
        pids = wait_until(lambda: len(self.worker_pids()) == count and self.worker_pids(), timeout, interval=0.2)
        assert pids, f"{count} heartbeats did not appear in {timeout} s; {self.describe()}"
        return set(pids)

    def check(self, max_age: float) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "BROKER_URL": "memory://", "OTEL_TRACES_EXPORTER": "none"}
        command = [sys.executable, "-m", "worker_health.probe", "check", "--dir", str(self.heartbeat_dir)]
        return subprocess.run(
            [*command, "--max-age", str(max_age)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60
        )


@pytest.fixture
def start_tree(tmp_path: Path) -> Iterator[Callable[[int], WorkerTree]]:
    require_rabbitmq()
    trees: list[WorkerTree] = []

    def start(port: int) -> WorkerTree:
        tree = WorkerTree(tmp_path, port)
        trees.append(tree)
        return tree

    try:
        yield start
    finally:
        for tree in trees:
            tree.kill()


def _ready(port: int) -> tuple[int, dict[str, Any]]:
    status, body = _get(port, "/health/ready")
    return status, (json.loads(body) if body else {})


@pytest.mark.timeout(120)
def test_tree_serves_health_once_and_stops_on_sigterm(start_tree: Callable[[int], WorkerTree]) -> None:
    port = free_port()
    tree = start_tree(port)
    workers = tree.wait_for_workers()

    ready = wait_until(lambda: _ready(port)[0] == 200 and _ready(port)[1].get("workers") == 2, timeout=30, interval=0.2)
    assert ready, f"not ready: {_ready(port)}; {tree.describe()}"
    assert _ready(port) == (200, {"broker": "ok", "database": "ok", "workers": 2})
    assert _get(port, "/health/live")[0] == 200

    status, metrics = _get(port, "/metrics")
    assert status == 200
    text = metrics.decode()
    for pid in workers:
        assert f'tracedq_worker_heartbeat_age_seconds{{pid="{pid}",state="running"}}' in text, text
    assert "python_info" in text  # the workers' default registries

    # A processed message shows up in the tree's page, labelled with the worker process that ran it.
    connection = pika.BlockingConnection(pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/"))
    message = {
        "queue_name": "greetings",
        "actor_name": "greet",
        "args": ["Ada"],
        "kwargs": {},
        "options": {},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": int(time.time() * 1000),
    }
    connection.channel().basic_publish("", "greetings", json.dumps(message).encode())
    connection.close()

    def consumed_by() -> set[str]:
        page = _get(port, "/metrics")[1].decode()
        return {
            sample.labels["worker_pid"]
            for family in text_string_to_metric_families(page)
            for sample in family.samples
            if sample.name == "messaging_client_consumed_messages_total"
            and sample.labels.get("dramatiq_actor_name") == "greet"
        }

    assert wait_until(lambda: bool(consumed_by()), timeout=20, interval=0.2), _get(port, "/metrics")[1].decode()[-2000:]
    assert consumed_by() <= {str(pid) for pid in workers}

    # One listening socket on the port, owned by neither the main process nor a worker: the fork.
    listeners = _listeners(port)
    assert len(listeners) == 1, listeners
    tree_pids = {tree.pid, *_children(tree.pid)}
    assert workers <= tree_pids
    forks = tree_pids - workers - {tree.pid}
    assert len(forks) == 1, (tree_pids, workers)
    assert _owners(listeners.pop(), tree_pids) == forks
    with socket.socket() as other, pytest.raises(OSError, match="in use"):
        other.bind(("127.0.0.1", port))

    probe = tree.check(max_age=5)
    assert probe.returncode == 0, probe
    assert all(f"worker {pid}: ok" in probe.stdout for pid in workers), probe.stdout

    tree.proc.send_signal(signal.SIGTERM)
    assert tree.proc.wait(timeout=60) == 0, tree.describe()
    assert wait_until(lambda: not any(_alive(pid) for pid in tree_pids), timeout=10, interval=0.2), tree_pids
    assert read_heartbeats(tree.heartbeat_dir) == [], "a graceful stop removes its heartbeat"
    assert _get(port, "/health/live")[0] == 0
    assert "Killing" not in tree.output()


@pytest.mark.timeout(120)
def test_sigkilled_worker_goes_stale_and_fails_the_probe(start_tree: Callable[[int], WorkerTree]) -> None:
    port = free_port()
    tree = start_tree(port)
    workers = tree.wait_for_workers()
    assert wait_until(lambda: tree.check(max_age=5).returncode == 0, timeout=20, interval=0.2), tree.describe()
    tree_pids = {tree.pid, *_children(tree.pid)}

    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    max_age = 4 * INTERVAL
    stale = wait_until(
        lambda: [r.pid for r in assess(read_heartbeats(tree.heartbeat_dir), max_age=max_age).stale],
        timeout=20,
        interval=0.2,
    )
    assert stale == [victim], (stale, victim)

    probe = tree.check(max_age=max_age)
    assert probe.returncode == 1, probe
    assert f"worker {victim}: heartbeat" in probe.stderr, probe.stderr

    # Dramatiq's main process stops the whole tree when a worker process dies; make sure it does, by itself. (A
    # SIGTERM sent while it stops reaches the other worker twice: Dramatiq then exits it before the heartbeat
    # middleware removes its file; with the probe fast, that SIGTERM used to land mid-stop.)
    tree.proc.wait(timeout=60)
    assert wait_until(lambda: not any(_alive(pid) for pid in tree_pids), timeout=10, interval=0.2), tree_pids
    assert [record.pid for record in read_heartbeats(tree.heartbeat_dir)] == [victim]


@pytest.mark.timeout(120)
def test_taken_port_logs_an_error_and_workers_keep_running(start_tree: Callable[[int], WorkerTree]) -> None:
    with listening_port() as port:  # another process holds it
        tree = start_tree(port)
        tree.wait_for_workers()
        logged = wait_until(lambda: "health_server_bind_failed" in tree.output(), timeout=30, interval=0.2)
        assert logged, tree.describe()
        time.sleep(4 * INTERVAL)
        assert tree.proc.poll() is None, tree.describe()
        probe = tree.check(max_age=5)
        assert probe.returncode == 0, probe
        tree.proc.send_signal(signal.SIGTERM)
        assert tree.proc.wait(timeout=60) == 0, tree.describe()


@pytest.mark.timeout(120)
def test_probe_as_the_readme_shows_it_passes_on_a_healthy_worker(tmp_path: Path) -> None:
    """``python -m worker_health.probe check --max-age 30`` beside ``dramatiq actors`` configured by the environment.

    The worker writes to ``WORKER_HEARTBEAT_DIR`` (not the default directory); the probe, given no ``--dir``,
    must look there, and print nothing on stderr (no runpy warning).
    """
    heartbeats = tmp_path / "heartbeats"
    with own_vhost("tracedq_probe") as vhost:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "LOG_", "HEALTH_"))}
        env.update(
            BROKER_URL=VhostProbe(vhost).broker_url,
            DATABASE_URL=migrated_sqlite_url(tmp_path / "probe.db"),
            OTEL_TRACES_EXPORTER="none",
            LOG_FORMAT="json",
            HEALTH_PORT="0",
            WORKER_HEARTBEAT_DIR=str(heartbeats),
            WORKER_HEARTBEAT_INTERVAL=str(INTERVAL),
        )
        worker = ServiceProcess(dramatiq_argv(processes=1, threads=1), env, tmp_path).start()
        try:
            assert wait_until(lambda: len(read_heartbeats(heartbeats)) == 1, 60), worker.describe()
            (pid,) = {record.pid for record in read_heartbeats(heartbeats)}
            probe = subprocess.run(
                [sys.executable, "-m", "worker_health.probe", "check", "--max-age", "30"],
                cwd=PROJECT_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert (probe.returncode, probe.stderr) == (0, ""), probe
            assert re.fullmatch(rf"worker {pid}: ok \(\d+\.\ds\)\n", probe.stdout), probe.stdout
            assert worker.terminate() == 0, worker.describe()
        finally:
            worker.kill()


@pytest.mark.timeout(120)
def test_tracedq_worker_serves_its_workers_metrics_and_logs_on_stdout(tmp_path: Path) -> None:
    """``tracedq-worker`` (= ``make worker``): the tree's /metrics has the workers' messaging metrics, and the
    worker processes' log lines arrive on stdout (the main process set up logging before Dramatiq forked)."""
    port = free_port()
    with own_vhost("tracedq_worker_cli") as vhost:
        probe = VhostProbe(vhost)
        env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "LOG_", "HEALTH_"))}
        env.update(
            BROKER_URL=probe.broker_url,
            DATABASE_URL=migrated_sqlite_url(tmp_path / "w.db"),
            OTEL_TRACES_EXPORTER="none",
            HEALTH_HOST="127.0.0.1",
            HEALTH_PORT=str(port),
            WORKER_HEARTBEAT_DIR=str(tmp_path / "heartbeats"),
            WORKER_HEARTBEAT_INTERVAL=str(INTERVAL),
        )
        argv = [str(Path(sys.prefix) / "bin" / "tracedq-worker"), "-p", "1", "-t", "1"]
        worker = ServiceProcess(argv, env, tmp_path).start()
        try:
            assert wait_until(lambda: _get(port, "/health/live")[0] == 200, 60), worker.describe()
            connection = probe.connect()
            message: dict[str, Any] = {
                "queue_name": "greetings",
                "actor_name": "greet",
                "args": ["Ada"],
                "kwargs": {},
                "options": {},
            }
            message |= {"message_id": str(uuid.uuid4()), "message_timestamp": int(time.time() * 1000)}
            connection.channel().basic_publish("", "greetings", json.dumps(message).encode())
            connection.close()

            def consumed() -> bool:
                page = _get(port, "/metrics")[1].decode()
                return any(
                    line.startswith("messaging_client_consumed_messages_total{")
                    and 'dramatiq_actor_name="greet"' in line
                    for line in page.splitlines()
                )

            assert wait_until(consumed, 30), _get(port, "/metrics")[1].decode()[-2000:]
            assert worker.terminate() == 0, worker.describe()
        finally:
            worker.kill()
    stdout = worker.stdout_path.read_text()
    assert '"event": "Worker process is ready for action."' in stdout, worker.describe()
    assert "Worker process is ready for action." not in worker.stderr_path.read_text()


# -- up but not working (issue 13 §6): tests/integration/worker_health_app.py in a vhost of its own ---------

APP = "tests.integration.worker_health_app"
APP_QUEUE = "health_app"
EMAIL = "ada.lovelace@example.com"


class StuckApp:
    """``dramatiq tests.integration.worker_health_app -p 1 -t 2`` on ``vhost``, configured by the environment only."""

    def __init__(self, tmp_path: Path, vhost: str, *, consumer_stall: float = 10, via_port: int | None = None) -> None:
        self.port = free_port()
        self.vhost = VhostProbe(vhost)
        self.heartbeats = tmp_path / "heartbeats"
        env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "LOG_", "HEALTH_"))}
        env.update(
            # via_port: through a TcpProxy; pika's heartbeat (10 min) then never closes a silent connection in a test
            BROKER_URL=f"amqp://guest:guest@127.0.0.1:{via_port}/{vhost}?heartbeat=600"
            if via_port
            else self.vhost.broker_url,
            DATABASE_URL=migrated_sqlite_url(tmp_path / "app.db"),  # at head: the schema gate lets it consume
            OTEL_TRACES_EXPORTER="none",
            LOG_FORMAT="json",
            HEALTH_HOST="127.0.0.1",
            HEALTH_PORT=str(self.port),
            HEALTH_MAX_AGE="5",
            HEALTH_CONSUMER_STALL=f"{consumer_stall:g}",
            HEALTH_TIME_LIMIT_GRACE="1",
            WORKER_HEARTBEAT_DIR=str(self.heartbeats),
            WORKER_HEARTBEAT_INTERVAL=str(INTERVAL),
        )
        self.env = env
        self.worker = ServiceProcess(dramatiq_argv(processes=1, threads=2, module=APP), env, tmp_path)

    def start(self) -> int:
        """Start the tree; the pid of its one worker process once its heartbeat is there."""
        self.worker.start()
        assert wait_until(lambda: len(read_heartbeats(self.heartbeats)) == 1, 60), self.worker.describe()
        (record,) = read_heartbeats(self.heartbeats)
        return record.pid

    def live(self) -> tuple[int, dict[str, Any]]:
        status, body = _get(self.port, "/health/live")
        return status, (json.loads(body) if body else {})

    def wait_live(self) -> None:
        assert wait_until(lambda: self.live()[0] == 200, 60), (self.live(), self.worker.describe())

    def wait_failing(self, line: str) -> dict[str, Any]:
        """Wait until ``/health/live`` answers 503 with ``line`` among its reasons; that body."""
        assert wait_until(lambda: line in self.live()[1].get("reasons", []), 60), (line, self.live(), self.describe())
        status, body = self.live()
        assert status == 503, body
        return body

    def check(self) -> subprocess.CompletedProcess[str]:
        """``python -m worker_health.probe check`` in the worker's environment, as the Kubernetes exec probe runs it."""
        argv = [sys.executable, "-m", "worker_health.probe", "check"]
        return subprocess.run(argv, cwd=PROJECT_ROOT, env=self.env, capture_output=True, text=True, timeout=60)

    def send(self, actor_name: str, *args: Any, delay: int | None = None) -> str:
        """Publish through ``messaging.broker.Broker``, as a producer would; the message id."""
        from messaging.broker import TracedqBroker

        sender = TracedqBroker(url=self.vhost.broker_url, confirm_delivery=True)
        try:
            message: dramatiq.Message[Any] = dramatiq.Message(
                queue_name=APP_QUEUE, actor_name=actor_name, args=args, kwargs={}, options={}
            )
            sender.declare_queue(APP_QUEUE, ensure=True)
            return str(sender.enqueue(message, delay=delay).message_id)
        finally:
            sender.close()

    def describe(self) -> str:
        return f"heartbeats: {[r.path.read_text() for r in read_heartbeats(self.heartbeats)]}; {self.worker.describe()}"


@pytest.fixture
def stuck_app(tmp_path: Path) -> Iterator[Callable[..., StuckApp]]:
    apps: list[StuckApp] = []
    with own_vhost("tracedq_stuck") as vhost:

        def make(**options: Any) -> StuckApp:
            app = StuckApp(tmp_path, vhost, **options)
            apps.append(app)
            return app

        try:
            yield make
        finally:
            for app in apps:
                app.worker.kill()


@pytest.mark.timeout(180)
def test_a_queue_rabbitmq_refuses_to_declare_fails_readiness_and_liveness(stuck_app: Callable[..., StuckApp]) -> None:
    """Today Dramatiq's consumer thread logs the refusal and retries every 3 s while both probes stay green."""
    app = stuck_app()
    connection = app.vhost.connect()
    dramatiqs = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "health_app.XQ"}
    connection.channel().queue_declare(APP_QUEUE, durable=True, arguments={**dramatiqs, "x-max-length": 10})
    connection.close()
    pid = app.start()

    refused = (
        f"worker {pid}: queue 'health_app' cannot be consumed: RabbitMQ refused to declare queue 'health_app' with "
        "arguments {'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'health_app.XQ'}: it exists with "
        "different ones (PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'health_app' in vhost "
        f"'{app.vhost.vhost}': received none but current is the value '10' of type 'signedint'). Queue arguments "
        "cannot change on an existing queue: delete the queue (after draining it) or use a new queue name."
    )
    assert app.wait_failing(refused) == {"status": "fail", "reasons": [refused]}
    status, ready = _ready(app.port)
    assert (status, ready) == (503, {"broker": "ok", "database": "ok", "workers": 1, "problems": [refused]})
    probe = app.check()
    assert (probe.returncode, probe.stdout, probe.stderr) == (1, "", f"FAIL {refused}\n"), probe
    # The consumer kept trying all along: the queue, deleted, is declared again and the worker is healthy again.
    connection = app.vhost.connect()
    connection.channel().queue_delete(APP_QUEUE)
    connection.close()
    app.wait_live()
    assert _ready(app.port) == (200, {"broker": "ok", "database": "ok", "workers": 1})
    assert app.worker.terminate() == 0, app.worker.describe()


@pytest.mark.timeout(180)
def test_a_dead_consumer_thread_fails_liveness_naming_its_queue(stuck_app: Callable[..., StuckApp]) -> None:
    app = stuck_app()
    pid = app.start()
    app.wait_live()
    app.send("kills_its_consumer", delay=10)
    dead = f"worker {pid}: consumer of queue 'health_app.DQ' is dead: its thread has exited"
    assert app.wait_failing(dead) == {"status": "fail", "reasons": [dead]}
    probe = app.check()
    assert (probe.returncode, probe.stdout, probe.stderr) == (1, "", f"FAIL {dead}\n"), probe


@pytest.mark.timeout(180)
def test_a_consumer_that_stopped_ticking_fails_liveness_naming_its_queue(stuck_app: Callable[..., StuckApp]) -> None:
    """The thread is alive but blocked: no delivery and no idle tick for longer than HEALTH_CONSUMER_STALL."""
    app = stuck_app(consumer_stall=3)
    pid = app.start()
    app.wait_live()
    app.send("blocks_its_consumer", delay=10)

    def stuck_lines() -> list[str]:
        return [line for line in app.live()[1].get("reasons", []) if "is stuck" in line]

    assert wait_until(stuck_lines, 60), app.describe()
    (line,) = stuck_lines()
    pattern = (
        rf"worker {pid}: consumer of queue 'health_app\.DQ' is stuck: no delivery or idle tick for \d+\.\ds \(max 3s\)"
    )
    assert re.fullmatch(pattern, line), line
    probe = app.check()
    assert probe.returncode == 1, probe
    assert re.fullmatch(rf"FAIL {pattern}\n", probe.stderr), probe.stderr


@pytest.mark.timeout(180)
def test_a_message_blocked_past_its_time_limit_fails_liveness_naming_actor_and_message(
    stuck_app: Callable[..., StuckApp],
) -> None:
    """TimeLimit cannot interrupt ``os.read``: after the limit (0.5 s) + grace (1 s) the message is stuck."""
    app = stuck_app()
    pid = app.start()
    app.wait_live()
    message_id = app.send("blocks_in_a_system_call", EMAIL)

    def stuck_lines() -> list[str]:
        return [line for line in app.live()[1].get("reasons", []) if "stuck on message" in line]

    assert wait_until(stuck_lines, 60), app.describe()
    (line,) = stuck_lines()
    pattern = (
        rf"worker {pid}: worker thread stuck on message {message_id} of actor 'blocks_in_a_system_call' "
        rf"\(queue 'health_app'\): running for \d+\.\ds, time limit 0\.5s \+ grace 1s"
    )
    assert re.fullmatch(pattern, line), line
    probe = app.check()
    assert probe.returncode == 1, probe
    assert re.fullmatch(rf"FAIL {pattern}\n", probe.stderr), probe.stderr
    assert "Time limit exceeded" in app.worker.output()  # TimeLimit tried, and could not
    assert EMAIL not in json.dumps(app.live()[1]) + probe.stderr + app.worker.output()


@pytest.mark.timeout(180)
def test_a_consumer_blocked_on_a_silent_connection_fails_liveness_naming_its_queue(
    stuck_app: Callable[..., StuckApp],
) -> None:
    """The worker reaches RabbitMQ through a proxy that stops forwarding without closing anything.

    The delay queue's consumer holds a delayed message; when its eta comes it publishes it to ``health_app``
    with publisher confirms on its connection, which has gone silent: pika waits for the confirm (until its
    heartbeat timeout, 10 minutes here), and the consumer thread, alive, stops ticking. The other consumers'
    connections are as silent, but their idle ticks go on (pika's select times out every second): only the
    delay queue's consumer is stuck. RabbitMQ blocking a connection (a memory or disk alarm) does the same.
    """
    with TcpProxy(("127.0.0.1", 5672)) as proxy:
        app = stuck_app(consumer_stall=3, via_port=proxy.port)
        pid = app.start()
        app.wait_live()
        app.send("greet", "Ada", delay=8000)
        # Held by the worker (not ready any more, not yet due): then silence every connection of the worker.
        assert wait_until(lambda: app.vhost.ready_count("health_app.DQ") == 0, 30), app.describe()
        proxy.pause()
        line = (
            rf"worker {pid}: consumer of queue 'health_app\.DQ' is stuck: "
            r"no delivery or idle tick for \d+\.\ds \(max 3s\)"
        )

        def failing() -> list[str]:
            return list(app.live()[1].get("reasons", []))

        assert wait_until(lambda: any(re.fullmatch(line, reason) for reason in failing()), 60), app.describe()
        assert [reason for reason in failing() if "is stuck" in reason and "health_app.DQ" not in reason] == []
        probe = app.check()
        assert probe.returncode == 1, probe
        assert re.search(rf"^FAIL {line}$", probe.stderr, re.MULTILINE), probe.stderr
        proxy.resume()
