"""The flow outcomes ``trace list --outcome`` accepts, worst first (the rules: ``cli/tracestore/flow.py``).

A module of its own, without imports, so the CLI can offer the choices without loading the store.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MESSAGE_OUTCOMES", "OPEN_OUTCOMES", "OUTCOMES"]

#: What a message can end with, worst first: a flow's outcome is the first one any of its messages has.
MESSAGE_OUTCOMES: Final = ("dead_lettered", "lost", "retrying", "pending", "skipped", "success")
#: Every outcome of a flow: ``error`` and ``none`` are for traces without any message.
OUTCOMES: Final = (*MESSAGE_OUTCOMES, "error", "none")
#: Outcomes that may still change: a message waits for its retry or for a worker.
OPEN_OUTCOMES: Final = frozenset({"retrying", "pending"})
