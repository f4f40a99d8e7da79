"""Bench actors for real worker processes:
``dramatiq --skip-logging bench.workload.worker_actors -p N -t N -Q <queue>``.

The broker is the production one (``actors.broker``: RabbitMQ with publish confirms, ``Tracing`` and
``LogContext`` first, ``Metrics``, ``Heartbeat``), configured from the environment exactly as a deployed
worker is. Three actors, one queue each:

* ``bench_noop``: nothing; the cost is the worker's and the tracing's.
* ``bench_cpu``: a busy loop until its thread has used ``CPU_SECONDS`` (2 ms) of CPU, so every message does
  the same work however many threads contend for the GIL.
* ``bench_io``: ``time.sleep`` of ``IO_SECONDS`` (20 ms), standing in for a database or HTTP call.

Each takes the producer's ``time.time()`` at send and appends one line per message to the file named by
``BENCH_RECORDS``: ``"<pid> <sent> <started> <finished>\\n"`` (seconds since the epoch, same clock as the
producer). One ``os.write`` on an ``O_APPEND`` descriptor per message: lines from several processes never
interleave, and it costs a few µs against the hundreds the traced message path costs.
"""

from __future__ import annotations

import os
import time

import dramatiq

from actors.broker import broker
from bench.workload.kinds import CPU_SECONDS, IO_SECONDS, KINDS, RECORDS_ENV

__all__ = ["bench_cpu", "bench_io", "bench_noop"]

_fd: list[int] = []  # opened on the first message, in the worker process (after Dramatiq's fork)


def _record(sent: float, started: float) -> None:
    if not _fd:
        _fd.append(os.open(os.environ[RECORDS_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
    os.write(_fd[0], f"{os.getpid()} {sent:.6f} {started:.6f} {time.time():.6f}\n".encode())


@dramatiq.actor(actor_name=KINDS["noop"][0], queue_name=KINDS["noop"][1], broker=broker, max_retries=0)
def bench_noop(sent: float) -> None:
    _record(sent, time.time())


@dramatiq.actor(actor_name=KINDS["cpu"][0], queue_name=KINDS["cpu"][1], broker=broker, max_retries=0)
def bench_cpu(sent: float) -> None:
    started = time.time()
    deadline = time.thread_time() + CPU_SECONDS  # this thread's CPU time: the same work however busy the GIL is
    while time.thread_time() < deadline:
        pass
    _record(sent, started)


@dramatiq.actor(actor_name=KINDS["io"][0], queue_name=KINDS["io"][1], broker=broker, max_retries=0)
def bench_io(sent: float) -> None:
    started = time.time()
    time.sleep(IO_SECONDS)
    _record(sent, started)
