"""Why a worker process is up but not working: what its heartbeat reports, one line per problem.

A dead consumer or worker thread; a queue RabbitMQ refuses to declare; a consumer that has not ticked for
``consumer_stall`` seconds (unless paused); a message running past its time limit + ``time_limit_grace``.
Message arguments are never named (they may hold personal data). The consumers' ticks and refused
declarations come from the broker's ``consumer_activity`` (messaging/consumer_activity.py), when it has one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dramatiq
from dramatiq.common import q_name
from dramatiq.errors import ActorNotFound

__all__ = ["time_limit_of", "worker_problems"]


def worker_problems(
    worker: dramatiq.Worker,
    running: Iterable[tuple[float, Any]],
    *,
    now: float,
    consumer_stall: float,
    time_limit_grace: float,
    default_time_limit: float | None,
) -> list[tuple[str, str]]:
    """(what, line) per problem: ``what`` stays the same while the problem lasts (the line's seconds grow).

    ``running`` holds (monotonic start, message) of each message a worker thread runs now.
    """
    activity = getattr(worker.broker, "consumer_activity", None)
    ticks: dict[str, float] = activity.ticks.copy() if activity is not None else {}
    refused: dict[str, str] = activity.declaration_failures.copy() if activity is not None else {}
    found = [
        (f"refused {name}", f"queue {name!r} cannot be consumed: {reason}") for name, reason in sorted(refused.items())
    ]
    for name, thread in sorted(worker.consumers.copy().items()):
        if not thread.is_alive():
            found.append((f"dead {name}", f"consumer of queue {name!r} is dead: its thread has exited"))
        elif q_name(name) not in refused and not thread.paused and name in ticks:
            idle = now - ticks[name]
            if idle > consumer_stall:
                line = (
                    f"consumer of queue {name!r} is stuck: no delivery or idle tick for {idle:.1f}s "
                    f"(max {consumer_stall:g}s)"
                )
                found.append((f"stuck {name}", line))
    dead_workers = sum(1 for thread in worker.workers if not thread.is_alive())
    if dead_workers:
        found.append((f"dead workers {dead_workers}", f"{dead_workers} worker thread(s) dead"))
    for started, message in running:
        limit = time_limit_of(worker.broker, message, default_time_limit)
        elapsed = now - started
        if limit is not None and elapsed > limit + time_limit_grace:
            line = (
                f"worker thread stuck on message {message.message_id} of actor {message.actor_name!r} "
                f"(queue {message.queue_name!r}): running for {elapsed:.1f}s, time limit {limit:g}s "
                f"+ grace {time_limit_grace:g}s"
            )
            found.append((f"stuck message {message.message_id}", line))
    return found


def time_limit_of(broker: dramatiq.Broker, message: Any, default_time_limit: float | None) -> float | None:
    """The message's time limit in seconds as Dramatiq's TimeLimit computes it; None when none applies.

    ``default_time_limit`` is the TimeLimit middleware's, in milliseconds; None without that middleware.
    """
    if default_time_limit is None:
        return None
    try:
        actor = broker.get_actor(message.actor_name)
    except ActorNotFound:
        return None
    limit_ms = message.options.get("time_limit") or actor.options.get("time_limit", default_time_limit)
    return float(limit_ms) / 1000 if limit_ms else None
