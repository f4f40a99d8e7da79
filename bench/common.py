"""Plumbing shared by the benchmarks: the OTLP sink process, child processes, /proc readings, RabbitMQ helpers.

Everything here is either a thin wrapper over the operating system or RabbitMQ, or a pure helper on numbers
(``pct``, ``paired``, ``mm``) that the report and the unit tests use too.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DRAMATIQ = Path(sys.executable).with_name("dramatiq")

__all__ = [
    "DEFAULT_AMQP_URL",
    "DRAMATIQ",
    "ROOT",
    "Sink",
    "by_round",
    "cpu_seconds",
    "delete_queues",
    "describe_machine",
    "free_port",
    "group_cpu",
    "machine_facts",
    "med",
    "migrated_sqlite",
    "mm",
    "paired",
    "pct",
    "read_jsonl",
    "slope",
    "spread",
    "status_kib",
    "stop_process",
]


# -- numbers ------------------------------------------------------------------------------------------


def pct(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty collection."""
    data = sorted(values)
    if not data:
        raise ValueError("percentile of no values")
    return data[max(0, min(len(data) - 1, math.ceil(q / 100 * len(data)) - 1))]


def paired(values: Mapping[Any, float], baseline: Mapping[Any, float]) -> list[float]:
    """``values[k] / baseline[k]`` for every key (a round) both have, in key order."""
    return [values[k] / baseline[k] for k in sorted(values) if baseline.get(k)]


def mm(values: Iterable[float], fmt: str = "{:.2f}") -> str:
    """``min / median / max``, or ``-`` for no values."""
    data = sorted(values)
    if not data:
        return "-"
    return f"{fmt.format(data[0])} / {fmt.format(statistics.median(data))} / {fmt.format(data[-1])}"


def med(values: Iterable[float | None], fmt: str = "{:.1f}") -> str:
    """The median of the values that are not None, or ``-``."""
    data = [v for v in values if v is not None]
    return fmt.format(statistics.median(data)) if data else "-"


def spread(values: Iterable[float], fmt: str = "{:.2f}") -> str:
    """``median [min, max]``; just the value when there is one; ``-`` when there is none."""
    data = sorted(values)
    if not data:
        return "-"
    middle = fmt.format(statistics.median(data))
    return middle if len(data) == 1 else f"{middle} [{fmt.format(data[0])}, {fmt.format(data[-1])}]"


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of ``y`` over ``x`` (0 for fewer than two distinct x)."""
    if len(points) < 2:
        return 0.0
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0


def by_round(rows: Iterable[Mapping[str, Any]], key: str) -> dict[int, float]:
    """``row["round"] -> row[key]`` for the rows that have a value (the input of :func:`paired`)."""
    return {row["round"]: row[key] for row in rows if row.get(key) is not None}


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """One dict per non-empty line."""
    with open(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]


# -- processes and /proc ------------------------------------------------------------------------------


def status_kib(field: str, pid: int | str = "self") -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``), or -1 when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_cpu(pgid: int) -> float:
    """utime + stime of every live process in a process group (a worker tree: main, workers, forks)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def migrated_sqlite(path: Path) -> str:
    """``sqlite:///<path>`` with the schema at head (made once): workers of our broker consume nothing until their
    database is migrated (actors/schema_gate.py)."""
    url = f"sqlite:///{path}"
    if not path.exists():
        from services.unit_of_work import create_schema, make_engine

        path.parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(url)
        create_schema(engine)
        engine.dispose()
    return url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 20.0) -> None:
    """SIGTERM to the main process only (Dramatiq forwards it), then SIGKILL to its process group.

    The process must have been started with ``start_new_session=True``, so its group is its own.
    """
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class Sink:
    """``python -m otlp_receiver.counting`` in its own process: an OTLP/HTTP receiver that counts spans."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otlp_receiver.counting", "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "listening":
            self.proc.kill()
            raise SystemExit(f"sink did not start: {line}")
        self.base = f"http://127.0.0.1:{line[1]}"
        self.endpoint = f"{self.base}/v1/traces"

    def _call(self, path: str, method: str) -> dict[str, Any]:
        request = urllib.request.Request(self.base + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=30) as response:
            data: dict[str, Any] = json.load(response)
        return data

    def reset(self) -> dict[str, Any]:
        """Zero the counters; returns the counts before."""
        return self._call("/reset", "POST")

    def count(self) -> dict[str, Any]:
        """``{"spans", "requests", "bytes", "by_name"}`` since the last reset."""
        return self._call("/count", "GET")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# -- RabbitMQ -----------------------------------------------------------------------------------------


def delete_queues(amqp_url: str, names: Iterable[str]) -> None:
    """Delete queues (a missing one is fine)."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        for name in names:
            channel.queue_delete(name)
    finally:
        connection.close()


def _rabbitmq_version(amqp_url: str) -> str:
    import pika

    try:
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    except Exception as exc:  # a report without the version beats no report
        return f"unreachable ({type(exc).__name__})"
    try:
        version = connection._impl.server_properties.get("version", b"?")  # pika keeps them on the impl only
        return version.decode() if isinstance(version, bytes) else str(version)
    finally:
        connection.close()


# -- machine facts ------------------------------------------------------------------------------------

_PACKAGES = ("dramatiq", "pika", "opentelemetry-sdk", "protobuf", "fastapi", "uvicorn", "httpx")


def machine_facts(packages: Iterable[str] = _PACKAGES, amqp_url: str | None = None) -> dict[str, Any]:
    """CPU, cores, memory, load, Python and package versions (and RabbitMQ's, given a URL)."""
    from importlib import metadata

    cpu = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "?"
    facts: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "packages": versions,
        "otel_env": sorted(k for k in os.environ if k.startswith("OTEL_")),
    }
    if amqp_url:
        facts["rabbitmq"] = _rabbitmq_version(amqp_url)
    return facts


def describe_machine(facts: Mapping[str, Any]) -> str:
    """One line of :func:`machine_facts`."""
    packages = ", ".join(f"{name} {version}" for name, version in facts.get("packages", {}).items())
    line = f"nproc {facts['nproc']}, CPU {facts['cpu']}, Python {facts['python']}, {packages}"
    if facts.get("otel_env"):
        line += ", OTEL_* set: " + " ".join(facts["otel_env"])
    return line
