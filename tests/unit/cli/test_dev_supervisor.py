"""The supervisor with real processes: ordered stop, startup failure, leftovers killed, children die with it."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from cli.dev.output import Output
from cli.dev.services import Service
from cli.dev.supervisor import StartupFailed, Supervisor
from tests.environment.polling import wait_until

PYTHON = sys.executable
# Prints a line, then stops on SIGTERM saying so.
POLITE = (
    "import signal, sys, time; print('up', flush=True); "
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(120)"
)


def service(name: str, code: str, *, stop_timeout: float = 10) -> Service:
    return Service(name, [PYTHON, "-c", code], dict(os.environ), lambda _pid: True, 10, stop_timeout)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def supervisor() -> tuple[Supervisor, io.StringIO]:
    stream = io.StringIO()
    return Supervisor(Output(stream, ["first", "second"], colour=False)), stream


def test_services_stop_last_started_first() -> None:
    sup, stream = supervisor()
    sup.start(service("first", POLITE))
    sup.start(service("second", POLITE))
    assert wait_until(lambda: stream.getvalue().count("| up") == 2)
    pids = sup.pids
    assert sup.stop_all() is True
    lines = [line for line in stream.getvalue().splitlines() if " stopp" in line]
    assert [line.split(" (")[0] for line in lines] == [
        "dev    | stopping second",
        "dev    | second stopped",
        "dev    | stopping first",
        "dev    | first stopped",
    ]
    assert "(exit 0, " in lines[1]
    assert not any(alive(pid) for pid in pids.values())


def test_a_service_that_exits_while_starting_fails_the_start() -> None:
    sup, _ = supervisor()
    failing = Service("first", [PYTHON, "-c", "import sys; sys.exit(3)"], dict(os.environ), lambda _pid: False, 30, 5)
    with pytest.raises(StartupFailed, match=r"^first exited with code 3 while starting$"):
        sup.start(failing)
    sup.stop_all()


def test_what_a_service_leaves_behind_is_killed_and_reported() -> None:
    """The main process stops on SIGTERM; a grandchild in its group that ignores SIGTERM is SIGKILLed."""
    code = textwrap.dedent(
        """
        import signal, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
        print("grandchild", child.pid, flush=True)
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        time.sleep(120)
        """
    )
    sup, stream = supervisor()
    sup.start(service("first", code))
    assert wait_until(lambda: "grandchild " in stream.getvalue())
    grandchild = int(stream.getvalue().split("grandchild ")[1].split()[0])
    assert sup.stop_all() is False
    assert "dev    | first: killed processes it left running" in stream.getvalue().splitlines()
    assert wait_until(lambda: not alive(grandchild), timeout=10)  # reaped by init, not by us


def test_services_get_sigterm_when_dev_is_killed(tmp_path: Path) -> None:
    """``kill -9`` of the supervisor's process: its service still stops (the parent-death signal)."""
    script = textwrap.dedent(
        f"""
        import io, os, sys, time
        sys.path.insert(0, {str(Path.cwd())!r})
        from cli.dev.output import Output
        from cli.dev.services import Service
        from cli.dev.supervisor import Supervisor
        sup = Supervisor(Output(sys.stdout, ["first"], colour=False))
        sup.start(Service("first", [sys.executable, "-c", {POLITE!r}], dict(os.environ), lambda _pid: True, 10, 10))
        print("child", sup.pids["first"], flush=True)
        time.sleep(120)
        """
    )
    parent = subprocess.Popen([PYTHON, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    line = parent.stdout.readline()
    while not line.startswith("child "):
        line = parent.stdout.readline()
    child = int(line.split()[1])
    assert alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    assert wait_until(lambda: not alive(child), timeout=30)


def test_a_second_stop_request_kills_what_is_left() -> None:
    """A service that ignores SIGTERM with a long stop timeout: the second Ctrl-C does not wait for it."""
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(300)"
    )
    sup, stream = supervisor()
    sup.start(service("first", stubborn, stop_timeout=600))
    assert wait_until(lambda: "| up" in stream.getvalue())
    pid = sup.pids["first"]
    sup.request_stop()
    stopper = threading.Thread(target=sup.stop_all)
    stopper.start()
    assert wait_until(lambda: "dev    | stopping first" in stream.getvalue())
    sup.request_stop()
    stopper.join(timeout=60)
    assert not stopper.is_alive()
    assert "dev    | first: killing it (asked twice to stop)" in stream.getvalue().splitlines()
    assert not alive(pid)
