"""The measurements of the overhead benchmark, one per fresh child process (``tracing_overhead.py --child``).

Each function builds its variant (``bench/workload/overhead_variants.py``), times one thing and returns a dict the
harness writes as one JSON line. One worker process, ``WORKER_THREADS`` threads, no-op (or always-failing) actor:

* ``stub_consume``: StubBroker; send N (untimed, spans flushed), time ``Worker`` start until ``join``.
* ``rmq_publish``: RabbitMQ; purge the queue, time N ``.send()`` (publish confirms); this fills the queue for
  ``rmq_consume``.
* ``rmq_consume``: RabbitMQ; the queue holds exactly N messages from ``rmq_publish`` (same variant); time
  ``Worker`` start until the actor ran N times (an in-actor counter; ``join`` polls and adds >= 1 s). Peak RSS
  (``VmHWM``) of the process is read then: the worker's own footprint, the messages live in RabbitMQ.
* ``fail_consume``: RabbitMQ; N messages for an actor that always raises, ``max_retries=0``, then time the
  worker until it ran N times: every message is logged with its traceback and dead-lettered (``.XQ``). The
  queue is filled straight over pika, each message with its own ``traceparent`` as our producers send them
  (about 10x faster than ``.send()`` with confirms, and the same for every variant).
* ``burst``: StubBroker; a tight loop of N ``.send()``, then the provider is shut down; spans created (a counting
  span processor) against spans the sink received tells whether the export pipeline dropped any.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.harness.processes import status_kib
from bench.workload.overhead_variants import EXPORTING, FAIL_ACTOR, FAIL_QUEUE, QUEUE, WORKER_THREADS, Setup, build

__all__ = ["CHILDREN"]


def _build(variant: str, args: argparse.Namespace, *, rabbitmq: bool, count_created: bool = False) -> Setup:
    return build(
        variant, rabbitmq=rabbitmq, amqp_url=args.amqp_url, endpoint=args.endpoint, count_created=count_created
    )


def _worker(setup: Setup, queue: str) -> Any:
    import dramatiq

    return dramatiq.Worker(setup.broker, queues={queue}, worker_threads=WORKER_THREADS)


def _timed(n: int, seconds: float, cpu: float) -> dict[str, Any]:
    return {"n": n, "seconds": seconds, "rate": n / seconds, "cpu_us": cpu / n * 1e6}


def _finish(variant: str, setup: Setup, result: dict[str, Any], spans: int) -> dict[str, Any]:
    """Shut the provider down (exports everything still queued) and add the span bookkeeping."""
    setup.shutdown()
    result["spans_expected"] = spans if variant in EXPORTING else 0
    if setup.created is not None:
        result["spans_created"] = setup.created.count
    result["otel_imported"] = "opentelemetry" in sys.modules
    return result


def _consume_until_done(setup: Setup, queue: str, n: int, timeout: float) -> dict[str, Any]:
    setup.target[0] = n
    rss_before = status_kib("VmRSS")
    worker = _worker(setup, queue)
    cpu0, t0 = time.process_time(), time.perf_counter()
    worker.start()
    finished = setup.done.wait(timeout=timeout)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    hwm = status_kib("VmHWM")
    worker.stop()
    if not finished:
        raise SystemExit(f"timed out after {timeout} s")
    return {**_timed(n, elapsed, cpu), "rss_before_kib": rss_before, "vmhwm_kib": hwm}


def _fill(amqp_url: str, queue: str, actor_name: str, n: int, timeout: float) -> None:
    """Publish ``n`` Dramatiq messages for ``actor_name`` over one pika channel, then wait until all are queued."""
    import os
    import uuid

    import pika
    from dramatiq import Message

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        impl, properties = channel._impl, pika.BasicProperties(delivery_mode=2)  # no per-message flush and poll
        for i in range(n):
            carrier = {"traceparent": f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"}
            message: Message[Any] = Message(
                queue, actor_name, (i,), {}, {"trace_context": carrier}, message_id=str(uuid.uuid4())
            )
            impl.basic_publish("", queue, message.encode(), properties)
            if i % 200 == 0:
                connection.process_data_events(0)
        deadline = time.monotonic() + timeout
        while channel.queue_declare(queue, passive=True).method.message_count < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"{queue} did not reach {n} messages")
            time.sleep(0.05)
    finally:
        connection.close()


def child_stub_consume(variant: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    setup = _build(variant, args, rabbitmq=False)
    actor = setup.actors[QUEUE]
    for i in range(n):
        actor.send(i)
    setup.flush()  # the send spans are not part of the consume window
    worker = _worker(setup, QUEUE)
    cpu0, t0 = time.process_time(), time.perf_counter()
    worker.start()
    setup.broker.join(QUEUE, timeout=int(args.timeout * 1000), fail_fast=True)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    worker.stop()
    return _finish(variant, setup, _timed(n, elapsed, cpu), 2 * n)


def child_rmq_publish(variant: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    setup = _build(variant, args, rabbitmq=True)
    broker, actor = setup.broker, setup.actors[QUEUE]
    broker.declare_queue(QUEUE, ensure=True)
    broker.flush(QUEUE)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        actor.send(i)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    result = {**_timed(n, elapsed, cpu), "queued": list(broker.get_queue_message_counts(QUEUE))}
    broker.close()
    return _finish(variant, setup, result, n)


def child_rmq_consume(variant: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    setup = _build(variant, args, rabbitmq=True)
    counts = setup.broker.get_queue_message_counts(QUEUE)
    if counts[0] != n:
        raise SystemExit(f"expected {n} messages in {QUEUE}, found {counts}")
    result = _consume_until_done(setup, QUEUE, n, args.timeout)
    setup.broker.close()
    return _finish(variant, setup, result, n)


def child_fail_consume(variant: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    setup = _build(variant, args, rabbitmq=True)
    broker = setup.broker
    broker.declare_queue(FAIL_QUEUE, ensure=True)
    broker.flush(FAIL_QUEUE)  # the queue, its .DQ and its .XQ
    _fill(args.amqp_url, FAIL_QUEUE, FAIL_ACTOR, n, args.timeout)
    result = _consume_until_done(setup, FAIL_QUEUE, n, args.timeout)
    result["dead_lettered"] = broker.get_queue_message_counts(FAIL_QUEUE)[2]
    broker.flush(FAIL_QUEUE)
    broker.close()
    # Our Tracing also records each dead-lettering, as a ``nack`` span.
    ours = variant in ("tracing", "tracing_inline", "tracing_full", "broker_shipped")
    return _finish(variant, setup, result, (2 if ours else 1) * n)


def child_burst(variant: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    setup = _build(variant, args, rabbitmq=False, count_created=True)
    actor = setup.actors[QUEUE]
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        actor.send(i)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return _finish(variant, setup, _timed(n, elapsed, cpu), n)


CHILDREN: dict[str, Callable[[str, int, argparse.Namespace], dict[str, Any]]] = {
    "stub_consume": child_stub_consume,
    "rmq_publish": child_rmq_publish,
    "rmq_consume": child_rmq_consume,
    "fail_consume": child_fail_consume,
    "burst": child_burst,
}
