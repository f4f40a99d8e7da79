"""``tracedq dev``: the whole service on a laptop with only RabbitMQ, its traces in the terminal.

One concern per module: ``config`` (what a run uses), ``lock`` (one run per state directory), ``preflight``
(ports and broker checked before anything starts), ``database`` (schema on start), ``services`` (the
processes, their order and readiness), ``supervisor`` (start, watch, ordered stop), ``output`` (merged,
prefixed output), ``run`` (the whole run). ``collector`` and ``smtp_sink`` are the two helper processes,
``mailbox`` the sink's storage. The click commands are in ``cli/dev_commands.py``.
"""

from cli.dev.config import DevConfig

__all__ = ["DevConfig"]
