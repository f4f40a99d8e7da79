"""Loopback ports for the servers and processes a test starts: one free now, a few held apart, one refusing.

``free_port`` is the kernel's pick (``bind(0)``): free when returned, for a process the test starts at once.
A node that binds its ports seconds later takes ``free_ports_below_ephemeral`` instead, which outgoing
connections (ephemeral ports) cannot grab in between.
"""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import Collection, Iterator
from pathlib import Path

__all__ = ["bound_port", "free_port", "free_ports_below_ephemeral", "listening_port"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def bound_port() -> Iterator[int]:
    """A loopback port with a socket bound and not listening: connections are refused, and no other process can
    take the port, until the block ends."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@contextlib.contextmanager
def listening_port(backlog: int = 128) -> Iterator[int]:
    """A loopback port a socket listens on and never accepts from, until the block ends: the port is taken, and
    up to ``backlog`` connections complete and then hear nothing (a black hole for a client with a timeout)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(backlog)
        yield int(sock.getsockname()[1])


def _ephemeral_low() -> int:
    """The first port the kernel hands out for ``bind(0)`` and outgoing connections (Linux; else 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports_below_ephemeral(count: int, reserved: Collection[int] = ()) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 now, below the ephemeral range and not in ``reserved``.

    Random, and each checked by binding it (all held together, so never the same twice).
    """
    rng = random.SystemRandom()
    low = min(_ephemeral_low(), 65536)
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            port = rng.randrange(10000, low) if low > 11000 else 0
            if port in reserved or port in ports:
                continue
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            ports.append(sock.getsockname()[1])
        return ports
