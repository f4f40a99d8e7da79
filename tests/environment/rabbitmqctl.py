"""``rabbitmqctl`` against the test server: the one way tests create vhosts, count and close connections, list queues.

Each call starts an Erlang node (about a second), so tests call it for what AMQP cannot tell or do.
"""

from __future__ import annotations

import subprocess

__all__ = ["rabbitmqctl"]


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    """Run ``rabbitmqctl``; its stdout, or RuntimeError naming the command and its stderr.

    Raises:
        RuntimeError: the command exited non-zero.
        OSError: ``rabbitmqctl`` could not be run.
        subprocess.TimeoutExpired: it took longer than ``timeout`` seconds.
    """
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout
