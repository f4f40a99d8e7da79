"""The producer API benchmark's processes: the real API app and a worker whose bench actor notes when it starts.

* ``uvicorn --factory bench.workload.api_app:create_bench_app``: ``api.app.create_app`` around the real broker
  (``actors.broker``: RabbitMQ with publish confirms, our tracing installed), with its ``orders`` route sending
  to a bench actor on queue ``bench_api`` instead of ``place_order``; the body is a real ``PlaceOrder``.
  ``broker.enqueue`` is wrapped to time each publish (with its send span and confirm);
  ``POST /bench/enqueue-times`` hands the times over.
* ``dramatiq bench.workload.api_app:setup_worker``: the real broker plus the bench actor, whose first statement
  is ``time.time()``, stored in Redis under its message id.

Both import the real broker module, which configures logging and the OTel SDK from the environment, as in
production; the harness (``bench/harness/api_stack.py``) starts them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dramatiq
    from fastapi import FastAPI

__all__ = [
    "ACTOR",
    "DEFAULT_REDIS_URL",
    "KEY_ENV",
    "QUEUE",
    "REDIS_ENV",
    "VARIANTS",
    "create_bench_app",
    "order_body",
    "setup_worker",
]

QUEUE = "bench_api"
ACTOR = "bench_api_start"
#: ``untraced`` sets ``OTEL_SDK_DISABLED=true`` (the instrumentation stays installed on no-op tracers); ``traced``
#: exports spans over OTLP/HTTP to the sink. Nothing else differs.
VARIANTS = ("untraced", "traced")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
KEY_ENV = "BENCH_API_KEY"  # the Redis hash the worker writes actor start times to
REDIS_ENV = "BENCH_API_REDIS_URL"
ORDER = {"customer_email": "bench@example.com", "lines": [{"sku": "BENCH-1", "quantity": 1}]}


def order_body(tag: str, i: int) -> dict[str, Any]:
    """The ``i``-th order of a load tagged ``tag`` (order ids are unique within a run)."""
    return {"order_id": f"{tag}-{i}", **ORDER}


def _declare_bench_actor(broker: dramatiq.Broker, fn: Callable[..., None]) -> dramatiq.Actor[Any, Any]:
    import dramatiq

    return dramatiq.actor(actor_name=ACTOR, queue_name=QUEUE, broker=broker, max_retries=0)(fn)


def create_bench_app() -> FastAPI:
    """``uvicorn --factory bench.workload.api_app:create_bench_app``: the real app, its orders route on the bench
    actor."""
    from actors import bootstrap
    from actors.broker import broker, settings
    from api.app import create_app
    from api.auth import ApiKeys
    from api.health import Checks

    def never_runs_here(payload: dict[str, Any]) -> None:  # the worker declares the real body
        raise RuntimeError("the bench actor runs in the worker")

    actor = _declare_bench_actor(broker, never_runs_here)
    enqueue_seconds: list[float] = []
    original = broker.enqueue

    def timed_enqueue(message: Any, *, delay: int | None = None) -> Any:
        started = time.perf_counter()
        try:
            return original(message, delay=delay)
        finally:
            enqueue_seconds.append(time.perf_counter() - started)

    setattr(broker, "enqueue", timed_enqueue)  # noqa: B010 (mypy refuses assigning to a method)
    app = create_app(
        broker=broker,
        actors={"orders": actor},
        jaeger_url=settings.jaeger_url,
        max_body_bytes=settings.api_max_body_bytes,
        checks=Checks(),
        api_keys=ApiKeys(digests=settings.api_key_digests),
        uow=lambda: bootstrap.dependencies().uow(),
    )

    @app.post("/bench/enqueue-times")
    def drain_enqueue_times() -> dict[str, list[float]]:
        data = list(enqueue_seconds)
        enqueue_seconds.clear()
        return {"seconds": data}

    return app


def setup_worker() -> None:
    """``dramatiq bench.workload.api_app:setup_worker``: the real broker plus the bench actor, which notes its
    start."""
    import redis
    from dramatiq.middleware import CurrentMessage

    from actors.broker import broker

    client = redis.Redis.from_url(os.environ.get(REDIS_ENV, DEFAULT_REDIS_URL))
    key = os.environ[KEY_ENV]
    broker.add_middleware(CurrentMessage())

    def bench_api_start(payload: dict[str, Any]) -> None:
        started = time.time()
        message = CurrentMessage.get_current_message()
        if message is not None:
            client.hset(key, message.message_id, repr(started))

    _declare_bench_actor(broker, bench_api_start)
