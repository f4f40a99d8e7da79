"""Services that stop when ``tracedq dev`` dies: Linux's parent-death signal, set in each child before it runs.

A ``kill -9`` of ``tracedq dev`` (or a crash) runs none of its ordered stop. Without this every service would
keep running, orphaned, holding its port and its queue consumers. With it each gets SIGTERM as soon as we
are gone: all at once, since the ordered stop needs us alive, but each still stops cleanly on its own.
Elsewhere than Linux there is no such signal and this does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` that asks for SIGTERM when this process dies (None off Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not between fork and exec
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    parent = os.getpid()

    def ask_for_sigterm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # we died between the fork and the line above: the signal would never come
            os.kill(os.getpid(), signal.SIGTERM)

    return ask_for_sigterm
