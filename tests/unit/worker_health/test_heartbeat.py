"""Heartbeat files, their freshness verdict and the ``python -m worker_health.probe check`` probe, on a temp dir."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from messaging.consumer_activity import ConsumerActivity
from services.schema import head_revision
from tests.environment.database import migrated_sqlite_url
from tests.environment.polling import wait_until
from worker_health.heartbeat import HealthServer, Heartbeat
from worker_health.heartbeat_files import assess, heartbeat_path, read_heartbeats, remove_orphans, write_heartbeat
from worker_health.probe import main

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def _beat(directory: Path, pid: int, *, age: float = 0.0, state: str = "running", main_pid: int = 1) -> Path:
    path = write_heartbeat(directory, pid=pid, main_pid=main_pid, main_start="100", state=state)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_fresh_heartbeats_are_live(tmp_path: Path) -> None:
    _beat(tmp_path, 11, age=1)
    _beat(tmp_path, 12, age=2)
    verdict = assess(read_heartbeats(tmp_path), max_age=5)
    assert verdict.ok, verdict.reasons
    assert sorted(record.pid for record in verdict.fresh) == [11, 12]


def test_one_stale_heartbeat_fails_even_with_fresh_siblings(tmp_path: Path) -> None:
    _beat(tmp_path, 11, age=1)
    _beat(tmp_path, 12, age=60)
    verdict = assess(read_heartbeats(tmp_path), max_age=30)
    assert not verdict.ok
    assert [record.pid for record in verdict.stale] == [12]
    assert verdict.reasons == ["worker 12: heartbeat 60.0s old (max 30s)"]


def test_no_heartbeat_is_not_live(tmp_path: Path) -> None:
    assert not assess(read_heartbeats(tmp_path / "missing"), max_age=30).ok
    assert not assess(read_heartbeats(tmp_path), max_age=30).ok


def test_stopping_heartbeats_never_fail_but_do_not_count(tmp_path: Path) -> None:
    _beat(tmp_path, 11, age=1)
    _beat(tmp_path, 12, age=600, state="stopping")
    verdict = assess(read_heartbeats(tmp_path), max_age=30)
    assert verdict.ok
    assert [record.pid for record in verdict.stopping] == [12]
    assert not assess(read_heartbeats(tmp_path), max_age=30, min_workers=2).ok


def test_unreadable_and_foreign_files_are_ignored(tmp_path: Path) -> None:
    _beat(tmp_path, 11)
    (tmp_path / "worker-99.json").write_text("{not json")
    (tmp_path / "notes.txt").write_text("hello")
    assert [record.pid for record in read_heartbeats(tmp_path)] == [11]


def test_orphans_of_dead_trees_are_removed_but_stale_siblings_stay(tmp_path: Path) -> None:
    me = os.getpid()
    my_start = Path(f"/proc/{me}/stat").read_text().rsplit(")", 1)[1].split()[19]
    sibling = write_heartbeat(tmp_path, pid=21, main_pid=me, main_start=my_start, state="running")
    os.utime(sibling, (0, 0))
    write_heartbeat(tmp_path, pid=22, main_pid=me, main_start="1", state="running")  # a previous tree, same pid
    write_heartbeat(tmp_path, pid=23, main_pid=os.getppid(), main_start=None, state="running")  # a live tree
    assert remove_orphans(tmp_path, main_pid=me, main_start=my_start) == [22]
    assert sorted(record.pid for record in read_heartbeats(tmp_path)) == [21, 23]


@pytest.mark.parametrize(
    ("ages", "argv", "code"),
    [
        ([1, 2], ["--max-age", "5"], 0),
        ([1, 20], ["--max-age", "5"], 1),
        ([], ["--max-age", "5"], 1),
        ([1], ["--max-age", "5", "--min-workers", "2"], 1),
    ],
)
def test_check_command(tmp_path: Path, ages: list[float], argv: list[str], code: int) -> None:
    for pid, age in enumerate(ages, start=100):
        _beat(tmp_path, pid, age=age)
    assert main(["check", "--dir", str(tmp_path), *argv]) == code


def test_check_runs_as_a_module(tmp_path: Path) -> None:
    _beat(tmp_path, 7, age=50)
    env = {**os.environ, "BROKER_URL": "memory://", "OTEL_TRACES_EXPORTER": "none"}
    args = [sys.executable, "-m", "worker_health.probe", "check", "--dir", str(tmp_path), "--max-age"]
    stale = subprocess.run([*args, "30"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1, stale
    assert "worker 7: heartbeat" in stale.stderr
    fresh = subprocess.run([*args, "3600"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert fresh.returncode == 0, fresh
    assert "worker 7: ok" in fresh.stdout


def test_middleware_beats_while_the_worker_runs_and_cleans_up_on_stop(tmp_path: Path) -> None:
    heartbeat = Heartbeat(tmp_path, interval=0.05)
    assert heartbeat.forks == []
    broker = StubBroker()
    broker.add_middleware(heartbeat)
    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    try:
        path = heartbeat_path(tmp_path, os.getpid())
        first = path.stat().st_mtime_ns
        deadline = time.monotonic() + 5
        while path.stat().st_mtime_ns == first and time.monotonic() < deadline:
            time.sleep(0.02)
        assert path.stat().st_mtime_ns > first, "the heartbeat thread never rewrote the file"
        assert heartbeat.threads_alive()
        assert assess(read_heartbeats(tmp_path), max_age=1).ok
    finally:
        worker.stop()
        broker.close()
    assert not path.exists()
    assert heartbeat._thread is None


def test_forks_only_with_a_server(tmp_path: Path) -> None:
    def fork() -> int:
        return 0

    server = HealthServer(heartbeat_dir=tmp_path, broker_url="amqp://x", database_url="sqlite://")
    assert Heartbeat(tmp_path, server=server, fork=fork).forks == [fork]
    with pytest.raises(ValueError, match="interval"):
        Heartbeat(tmp_path, interval=0)


def test_metrics_and_readiness_report_this_trees_heartbeats(tmp_path: Path) -> None:
    """The server is meant to run in a fork of the tree's main process: here the test's parent plays it."""
    main_pid = os.getppid()
    main_start = Path(f"/proc/{main_pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    write_heartbeat(tmp_path, pid=31, main_pid=main_pid, main_start=main_start, state="running")
    write_heartbeat(tmp_path, pid=32, main_pid=main_pid, main_start="0", state="running")  # another tree
    server = HealthServer(
        heartbeat_dir=tmp_path,
        broker_url="amqp://guest:guest@127.0.0.1:1/",
        database_url=migrated_sqlite_url(tmp_path / "at-head.db"),
        check_timeout=1,
        metrics_sources=(lambda: b"# extra seam\n",),
    )
    text = server.metrics().decode()
    assert 'tracedq_worker_heartbeat_age_seconds{pid="31",state="running"}' in text
    assert 'pid="32"' not in text
    assert text.endswith("# extra seam\n")
    status, body = server.readiness()
    assert status == 503
    assert body["database"] == "ok"
    assert body["workers"] == 1
    assert body["broker"].startswith("error")


def test_readiness_names_the_revision_an_empty_database_lacks(tmp_path: Path) -> None:
    server = HealthServer(heartbeat_dir=tmp_path, broker_url="amqp://x", database_url=f"sqlite:///{tmp_path / 'e.db'}")
    assert server.check_database() == f"schema behind (at none, code needs {head_revision()})"


def _probe(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m worker_health.probe check`` with no flags: all from the environment, as the README shows it."""
    env = {key: value for key, value in os.environ.items() if key not in ("WORKER_HEARTBEAT_DIR", "HEALTH_MAX_AGE")}
    env.update(BROKER_URL="memory://", OTEL_TRACES_EXPORTER="none", **env_extra)
    argv = [sys.executable, "-m", "worker_health.probe", "check"]
    return subprocess.run(argv, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_check_reads_its_directory_and_max_age_from_the_environment(tmp_path: Path) -> None:
    """WORKER_HEARTBEAT_DIR and HEALTH_MAX_AGE are the probe's defaults, and a run prints no RuntimeWarning."""
    _beat(tmp_path, 7, age=100)
    lenient = _probe({"WORKER_HEARTBEAT_DIR": str(tmp_path), "HEALTH_MAX_AGE": "3600"})
    assert (lenient.returncode, lenient.stderr) == (0, ""), lenient
    assert re.fullmatch(r"worker 7: ok \(\d+\.\ds\)\n", lenient.stdout), lenient.stdout  # its age: 100 s and more
    strict = _probe({"WORKER_HEARTBEAT_DIR": str(tmp_path), "HEALTH_MAX_AGE": "30"})
    assert (strict.returncode, strict.stdout) == (1, ""), strict
    fail = r"FAIL worker 7: heartbeat \d+\.\ds old \(max 30s\)\nFAIL 0 fresh worker heartbeat\(s\), need at least 1\n"
    assert re.fullmatch(fail, strict.stderr), strict.stderr


def test_a_fresh_heartbeat_reporting_problems_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _beat(tmp_path, 11, age=1)
    problem = "consumer of queue 'orders.DQ' is dead: its thread has exited"
    write_heartbeat(tmp_path, pid=12, main_pid=1, main_start="100", state="running", problems=[problem])
    verdict = assess(read_heartbeats(tmp_path), max_age=5)
    assert not verdict.ok
    assert verdict.reasons == [f"worker 12: {problem}"]
    assert main(["check", "--dir", str(tmp_path), "--max-age", "5"]) == 1
    out, err = capsys.readouterr()
    assert re.fullmatch(r"worker 11: ok \(\d\.\ds\)\n", out), out
    assert err == f"FAIL worker 12: {problem}\n"


def test_problems_name_refused_queues_stuck_consumers_and_messages_past_their_time_limit(tmp_path: Path) -> None:
    """Heartbeat.problems() on a StubBroker worker, at a ``now`` far enough ahead: no waiting on a clock."""
    heartbeat = Heartbeat(tmp_path, interval=60, consumer_stall=5, time_limit_grace=2)
    broker = StubBroker()
    broker.add_middleware(heartbeat)
    activity = ConsumerActivity()
    broker.consumer_activity = activity  # as messaging.broker.Broker has
    release = threading.Event()
    started = threading.Event()

    @dramatiq.actor(broker=broker, queue_name="slow", time_limit=1000)
    def wedged(customer_email: str) -> None:
        started.set()
        release.wait()  # a lock acquire in C: TimeLimit's exception waits until it returns

    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    try:
        assert heartbeat.problems() == []
        message = wedged.send("ada@example.com")
        assert started.wait(10)
        soon = time.monotonic() + 2.5  # past the 1 s limit, within the grace
        assert heartbeat.problems(now=soon) == []
        activity.tick("slow")
        activity.tick("slow.DQ")
        activity.declaration_failed("refused", "RabbitMQ refused to declare queue 'refused' (...)")
        worker.consumers["slow.DQ"].pause()
        later = time.monotonic() + 100
        problems = heartbeat.problems(now=later)
        assert problems[:2] == [
            "queue 'refused' cannot be consumed: RabbitMQ refused to declare queue 'refused' (...)",
            "consumer of queue 'slow' is stuck: no delivery or idle tick for 100.0s (max 5s)",
        ]
        assert re.fullmatch(
            rf"worker thread stuck on message {message.message_id} of actor 'wedged' \(queue 'slow'\): "
            r"running for 10\d\.\ds, time limit 1s \+ grace 2s",
            problems[2],
        ), problems
        assert len(problems) == 3  # the paused 'slow.DQ' consumer is not stuck
        assert "ada@example.com" not in "".join(problems)
        activity.declaration_succeeded("refused")
        activity.tick("slow")
        release.set()
        assert wait_until(lambda: heartbeat.problems() == [], 10), heartbeat.problems()
    finally:
        release.set()
        worker.stop()
        broker.close()


def test_liveness_and_readiness_name_the_problems_of_this_tree(tmp_path: Path) -> None:
    main_pid = os.getppid()
    main_start = Path(f"/proc/{main_pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    server = HealthServer(
        heartbeat_dir=tmp_path, broker_url="amqp://guest:guest@127.0.0.1:1/", database_url="sqlite://", check_timeout=1
    )
    write_heartbeat(tmp_path, pid=31, main_pid=main_pid, main_start=main_start, state="running")
    assert server.liveness() == (200, {"status": "ok"})
    assert "problems" not in server.readiness()[1]
    problem = "queue 'orders' cannot be consumed: RabbitMQ refused"
    write_heartbeat(tmp_path, pid=31, main_pid=main_pid, main_start=main_start, state="running", problems=[problem])
    assert server.liveness() == (503, {"status": "fail", "reasons": [f"worker 31: {problem}"]})
    status, body = server.readiness()
    assert (status, body["workers"], body["problems"]) == (503, 1, [f"worker 31: {problem}"])


def test_the_event_loop_thread_is_a_daemon_and_runs_async_actors() -> None:
    """A worker process that exits without ``after_worker_shutdown`` (a second SIGTERM) is not kept alive by it."""
    import asyncio

    from dramatiq.asyncio import get_event_loop_thread
    from dramatiq.brokers.stub import StubBroker

    from worker_health.event_loop import DaemonAsyncIO

    broker = StubBroker(middleware=[DaemonAsyncIO()])
    results: list[int] = []

    @dramatiq.actor(broker=broker)
    async def double(value: int) -> None:
        await asyncio.sleep(0)
        results.append(value * 2)

    worker = dramatiq.Worker(broker, worker_timeout=50)
    worker.start()
    try:
        thread = get_event_loop_thread()
        assert thread is not None and thread.daemon and thread.is_alive()
        double.send(21)
        broker.join(double.queue_name)
        worker.join()
        assert results == [42]
    finally:
        worker.stop()
    assert get_event_loop_thread() is None
