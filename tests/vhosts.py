"""A RabbitMQ virtual host of a test's own: tests on one server at the same time never share a queue."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pika
import pytest

from tests.conftest import RABBITMQ_URL, ci_requires_services, require_rabbitmq


def rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl``; its stdout, or RuntimeError naming the command and its stderr."""
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


@contextmanager
def own_vhost(prefix: str) -> Iterator[str]:
    """A fresh vhost ``<prefix>_<random>`` with full permissions for the test user, deleted afterwards.

    Skips when RabbitMQ or ``rabbitmqctl`` is missing; with ``CI=true`` that is a failure instead.
    """
    require_rabbitmq()
    if shutil.which("rabbitmqctl") is None:
        if ci_requires_services():
            pytest.fail("rabbitmqctl is required on CI to create a vhost of the test's own")
        pytest.skip("rabbitmqctl not found: cannot create a vhost of our own")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    user = pika.URLParameters(RABBITMQ_URL).credentials.username
    try:
        rabbitmqctl("add_vhost", name)
        rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        if ci_requires_services():
            pytest.fail(f"cannot create a vhost with rabbitmqctl on CI: {exc}")
        pytest.skip(f"cannot create a vhost with rabbitmqctl: {exc}")
    try:
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)
