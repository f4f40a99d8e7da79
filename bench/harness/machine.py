"""The machine a run measured on: CPU, cores, memory, load, Python, package versions and RabbitMQ's.

Every report states them, because the machine is shared: ratios compare, absolute rates do not.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Mapping
from typing import Any

from bench.harness.rabbitmq import rabbitmq_version

__all__ = ["describe_machine", "machine_facts"]

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
        facts["rabbitmq"] = rabbitmq_version(amqp_url)
    return facts


def describe_machine(facts: Mapping[str, Any]) -> str:
    """One line of :func:`machine_facts`."""
    packages = ", ".join(f"{name} {version}" for name, version in facts.get("packages", {}).items())
    line = f"nproc {facts['nproc']}, CPU {facts['cpu']}, Python {facts['python']}, {packages}"
    if facts.get("otel_env"):
        line += ", OTEL_* set: " + " ".join(facts["otel_env"])
    return line
