"""When ``trace tail`` prints a trace: the rule that says a trace is complete.

Spans of one trace come from several processes, each exporting in batches, so "complete" is a judgement:

- a trace whose flow is closed (``success``, ``dead_lettered``, ``skipped``, ``lost``, ``error``, ``none``: see
  :mod:`cli.tracestore.flow`) is complete once no new span arrived for ``settle`` seconds;
- a trace whose flow is open (a message ``pending`` or ``retrying``) waits for more; it is printed anyway after
  ``open_timeout`` seconds without a new span (a retry with a long backoff), with that open outcome;
- a trace already printed is printed again when new spans arrive and it is complete again (the retry ran).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cli.tracestore.outcomes import OPEN_OUTCOMES

__all__ = ["TailTracker"]


@dataclass
class TailTracker:
    """Remembers which traces were printed, with how many spans, to decide which are due now."""

    settle: float = 2.0
    open_timeout: float = 60.0
    _printed: dict[str, int] = field(default_factory=dict)

    def due(self, trace_id: str, *, span_count: int, outcome: str, last_received: float, now: float) -> bool:
        """Whether to print the trace now; call :meth:`printed` once it is."""
        if self._printed.get(trace_id) == span_count:
            return False
        quiet = now - last_received
        return quiet >= (self.open_timeout if outcome in OPEN_OUTCOMES else self.settle)

    def printed(self, trace_id: str, span_count: int) -> None:
        self._printed[trace_id] = span_count
