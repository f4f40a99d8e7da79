"""A throwaway RabbitMQ node for tests that need RabbitMQ configured differently: the ``rabbitmq_prometheus``
plugin for a real scrape, or settings of their own (``extra_config`` lines of rabbitmq.conf, an ``advanced_config``
such as a short consumer timeout checked every half second).

The machine's own RabbitMQ (127.0.0.1:5672) is never touched: this starts a second node with a unique
name, random loopback ports and every file (config, enabled plugins, Mnesia, logs, Erlang cookie) in a
temporary directory, and stops it with ``rabbitmqctl -n <node> stop`` (SIGKILL to its process group as a
fallback). It shares the running epmd (4369), as a second node on one host does.

Debian's ``/usr/sbin/rabbitmq-*`` wrappers ``su`` to the ``rabbitmq`` user when run as root; this calls the
scripts behind them (``/usr/lib/rabbitmq/bin``) itself, as that user when the tests run as root, so the
temporary directory is chowned to it. Elsewhere, ``rabbitmq-server`` from PATH runs as the current user.

Tests get one through ``throwaway_rabbitmq_node`` or the session fixture ``rabbitmq_prometheus_node``
(tests/environment/fixtures.py). Reading what it serves: tests/rabbitmq_scrape.py.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pika

from tests.environment.ports import free_ports_below_ephemeral
from tests.environment.servers import unavailable

__all__ = ["RabbitmqNode", "RabbitmqNodeUnavailable", "throwaway_rabbitmq_node"]

DEBIAN_SCRIPTS = Path("/usr/lib/rabbitmq/bin")

# Ports a random pick must not take: the system node's and those rabbitmqctl's own Erlang node listens on.
_RESERVED_PORTS = frozenset({4369, 5672, 15672, 15692, 25672, *range(35672, 35683)})

_CONFIG = """\
listeners.tcp.default = 127.0.0.1:{amqp_port}
prometheus.tcp.ip = 127.0.0.1
prometheus.tcp.port = {prometheus_port}
# Queues publish their stats every second (default 5 s): gauges follow a publish quickly.
collect_statistics_interval = 1000
# As the official Docker image: no management metrics collector (Prometheus reads core metrics).
management_agent.disable_metrics_collector = true
# A nearly full developer disk must not raise the disk alarm and block publishers (default limit 50 MB).
disk_free_limit.absolute = 1MB
"""


class RabbitmqNodeUnavailable(RuntimeError):
    """The node could not start: no RabbitMQ installed, or it exited or did not answer in time."""


def _scripts_dir() -> Path:
    if (DEBIAN_SCRIPTS / "rabbitmq-server").exists():
        return DEBIAN_SCRIPTS
    found = shutil.which("rabbitmq-server")
    if found is None:
        raise RabbitmqNodeUnavailable("rabbitmq-server not found (neither in /usr/lib/rabbitmq/bin nor on PATH)")
    return Path(found).parent


def _run_as() -> dict[str, Any]:
    """``subprocess`` arguments dropping root to the ``rabbitmq`` user, as Debian's wrappers do; else none."""
    if os.geteuid() != 0:
        return {}
    try:
        user = pwd.getpwnam("rabbitmq")
    except KeyError:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


class RabbitmqNode:
    """One throwaway node: ``start()`` (or ``with``) boots it and waits for AMQP and Prometheus; ``stop()``."""

    def __init__(self, *, start_timeout: float = 30.0, extra_config: str = "", advanced_config: str = "[].") -> None:
        self.start_timeout = start_timeout
        self.extra_config = extra_config  # rabbitmq.conf lines, e.g. "consumer_timeout = 3000"
        # advanced.config (Erlang terms) for settings rabbitmq.conf does not take, e.g. channel_tick_interval
        self.advanced_config = advanced_config
        self.name = f"tracedq-prom-{os.getpid()}-{secrets.token_hex(4)}@localhost"
        self.amqp_port, self.prometheus_port, self.dist_port = free_ports_below_ephemeral(3, _RESERVED_PORTS)
        self.start_seconds: float | None = None
        self.base_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._scripts = DEBIAN_SCRIPTS
        self._run_as: dict[str, Any] = {}
        self._env: dict[str, str] = {}

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def metrics_url(self, path: str = "/metrics") -> str:
        """The Prometheus endpoint's URL for ``path`` (``/metrics``, ``/metrics/detailed?family=...``)."""
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        return f"http://127.0.0.1:{self.prometheus_port}{path}"

    def scrape(self, path: str = "/metrics", timeout: float = 10.0) -> str:
        """The text exposition at ``path``."""
        with urllib.request.urlopen(self.metrics_url(path), timeout=timeout) as response:
            body: bytes = response.read()
        return body.decode()

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Boot the node and wait (``start_timeout``) until both endpoints answer; on failure nothing is left."""
        self._scripts = scripts = _scripts_dir()
        self._run_as = _run_as()
        self.base_dir = base = Path(tempfile.mkdtemp(prefix="tracedq-rabbitmq-"))
        for sub in ("mnesia", "log", "home"):
            (base / sub).mkdir()
        (base / "rabbitmq.conf").write_text(
            _CONFIG.format(amqp_port=self.amqp_port, prometheus_port=self.prometheus_port) + self.extra_config + "\n"
        )
        (base / "enabled_plugins").write_text("[rabbitmq_prometheus].\n")
        (base / "advanced.config").write_text(self.advanced_config + "\n")
        (base / "rabbitmq-env.conf").write_text("")  # instead of /etc/rabbitmq/rabbitmq-env.conf (the system node's)
        if "user" in self._run_as:
            for path in (base, *base.rglob("*")):
                os.chown(path, self._run_as["user"], self._run_as["group"])
        self._env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": str(base / "home"),  # the Erlang cookie is generated here, shared with our rabbitmqctl only
            "ERL_EPMD_ADDRESS": "127.0.0.1",  # if no epmd runs yet, the one this node starts is loopback-only
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
        }
        started = time.monotonic()
        try:
            with (base / "server.out").open("wb") as out:  # a file, not a pipe nobody drains
                self._proc = subprocess.Popen(
                    [str(scripts / "rabbitmq-server")],
                    cwd=base,
                    env=self._env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **self._run_as,
                )
            self._wait_until_ready(started + self.start_timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started
        return self

    def _wait_until_ready(self, deadline: float) -> None:
        assert self._proc is not None
        amqp = prometheus = False
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RabbitmqNodeUnavailable(
                    f"node {self.name} exited with code {self._proc.returncode}:\n{self.log_tail()}"
                )
            amqp = amqp or self._answers_amqp()
            prometheus = prometheus or self._answers_prometheus()
            if amqp and prometheus:
                return
            time.sleep(0.25)
        raise RabbitmqNodeUnavailable(
            f"node {self.name} not ready after {self.start_timeout:.0f} s (AMQP: {amqp}, Prometheus: {prometheus}):"
            f"\n{self.log_tail()}"
        )

    def _answers_amqp(self) -> bool:
        parameters = pika.URLParameters(self.amqp_url)
        parameters.connection_attempts, parameters.socket_timeout = 1, 2
        try:
            pika.BlockingConnection(parameters).close()
        except Exception:
            return False
        return True

    def _answers_prometheus(self) -> bool:
        try:
            self.scrape("/metrics", timeout=2)
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """``rabbitmqctl stop``, SIGKILL to the process group if it is still up, then the directory goes. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    subprocess.run(
                        [str(self._scripts / "rabbitmqctl"), "-n", self.name, "stop"],
                        cwd=self.base_dir,
                        env=self._env,
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        timeout=30,
                        check=False,
                        **self._run_as,
                    )
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=15)
            # The group also holds erl_child_setup and inet_gethost; after a clean stop this finds nothing.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's stdout and of its log file (for failure messages)."""
        if self.base_dir is None:
            return "(no directory)"
        parts = []
        for path in (self.base_dir / "server.out", self.base_dir / "log" / f"{self.name}.log"):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts) or "(no output)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def throwaway_rabbitmq_node(node: RabbitmqNode) -> Iterator[RabbitmqNode]:
    """Start ``node``, yield it, stop it. Skipped when it cannot start locally; on CI that is a failure. The
    machine's own RabbitMQ is never touched."""
    try:
        node.start()
    except RabbitmqNodeUnavailable as exc:
        unavailable(
            f"cannot start a throwaway RabbitMQ node: {str(exc).splitlines()[0]}",
            on_ci=f"a throwaway RabbitMQ node is required on CI and did not start: {exc}",
        )
    try:
        yield node
    finally:
        node.stop()
