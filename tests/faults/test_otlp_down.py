"""Fault 4 of issue 7: the OTLP endpoint is down for the whole run of a real worker tree.

``dramatiq actors -p 2 -t 2`` exports its spans to a port where a socket is bound but not listening, so every
connection is refused (and no other process can take the port meanwhile). It processes a warm-up of greet
messages and then a few thousand more on the test's own vhost, with its health endpoint on a loopback port.

- Every message is processed: the tree's ``messaging_client_consumed_messages_total`` and its
  ``greeting_composed`` log lines both count them all; nothing is left in the queue.
- The loss is counted: on the tree's ``/metrics`` page, spans failed in an export
  (``otel_sdk_exporter_span_exported_total{error_type="requests.exceptions.ConnectionError"}``) plus spans
  dropped before one (``otel_sdk_processor_span_processed_total{error_type="export_failing"}``) account for
  every span the worker ended, and none was exported.
- Memory is bounded: while exports fail each worker process holds one batch (512 spans) in its queue and one in
  its export process at most (``otel_sdk_processor_span_queue_size`` counts both), and the worker processes' RSS
  grows by less than a generous bound between the warm-up and the end.
- It is logged once per interval (10 s) per process, not per span or batch, and the SDK exporter's own
  per-retry and per-batch lines (its export processes') never appear.
- SIGTERM stops the tree cleanly: the shutdown flush sends the held batch once, which the SDK exporter retries
  for at most its timeout (10 s), and the worker exits (the pytest timeout bounds it).

Throughput against a working collector is a benchmark figure, not an assertion: ``bench/otlp_down.py``.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.environment.polling import wait_until
from tests.environment.ports import bound_port, free_port
from tests.environment.processes import ServiceProcess
from tests.environment.sender import FlowSender
from tests.environment.stack import Stack

pytestmark = [pytest.mark.faults, pytest.mark.rabbitmq, pytest.mark.timeout(240)]

WARM_UP = 300
MESSAGES = 3_000
LOG_INTERVAL = 10.0  # PipeSpanProcessor's drop_log_interval
BATCH = 512  # OTEL_BSP_MAX_EXPORT_BATCH_SIZE's default
RSS_GROWTH_BOUND_KIB = 48 * 1024  # generous: the spans of 3,000 messages kept in memory would be about this much
CONNECTION_ERROR = "requests.exceptions.ConnectionError"
SDK_EXPORTER_LINES = ("Transient error", "Failed to export", "retrying in", "Exporter already shutdown")


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port with a socket bound and not listening: connections are refused while the test runs."""
    with bound_port() as port:
        yield port


def _page(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return bytes(response.read()).decode()
    except (urllib.error.URLError, OSError):
        return ""


def _samples(page: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name == name
    ]


def _consumed(page: str) -> int:
    samples = _samples(page, "messaging_client_consumed_messages_total")
    return int(sum(value for labels, value in samples if labels.get("dramatiq_actor_name") == "greet"))


def _failing_pids(page: str) -> set[str]:
    """The worker processes whose export process has answered a failed batch."""
    samples = _samples(page, "otel_sdk_exporter_span_exported_total")
    return {labels["worker_pid"] for labels, value in samples if labels.get("error_type") and value}


def _worker_pids(heartbeat_dir: Path) -> set[int]:
    return {int(path.stem.removeprefix("worker-")) for path in heartbeat_dir.glob("worker-*.json")}


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def _send(sender: FlowSender, count: int) -> None:
    for index in range(count):
        sender.send("greetings", "greet", f"guest-{index}")


def test_worker_with_the_otlp_endpoint_down_processes_everything_and_counts_the_lost_spans(
    fault_env: Stack,
    fault_sender: FlowSender,
    start_worker: Callable[..., ServiceProcess],
    refused_port: int,
    tmp_path: Path,
) -> None:
    """Refused OTLP: all messages processed, every lost span counted on /metrics, bounded memory and log lines."""
    health_port = free_port()
    started = time.monotonic()
    worker = start_worker(
        "otlp-down",
        processes=2,
        threads=2,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{refused_port}",
        HEALTH_HOST="127.0.0.1",
        HEALTH_PORT=str(health_port),
        WORKER_HEARTBEAT_INTERVAL="0.5",
    )
    heartbeat_dir = tmp_path / "heartbeats"
    assert wait_until(lambda: len(_worker_pids(heartbeat_dir)) == 2, 60, interval=0.2), worker.describe()
    pids = _worker_pids(heartbeat_dir)

    _send(fault_sender, WARM_UP)
    assert wait_until(lambda: _consumed(_page(health_port)) == WARM_UP, 90, interval=0.5), worker.describe()
    rss_before = {pid: _rss_kib(pid) for pid in pids}

    _send(fault_sender, MESSAGES)
    total = WARM_UP + MESSAGES
    assert wait_until(lambda: _consumed(_page(health_port)) == total, 120, interval=0.5), worker.describe()
    rss_after = {pid: _rss_kib(pid) for pid in pids}
    # Each export process retries a refused batch for the SDK exporter's timeout (10 s) before it answers: wait
    # until every worker process has heard of a failed batch, then three heartbeats for the final counts.
    assert wait_until(lambda: _failing_pids(_page(health_port)) == {str(pid) for pid in pids}, 60, interval=0.5), (
        worker.describe()
    )
    time.sleep(1.5)
    page = _page(health_port)

    stopping = time.monotonic()
    try:
        assert worker.terminate(timeout=60) == 0, worker.describe()
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"worker tree still running 60 s after SIGTERM: the shutdown flush is not bounded; {worker.describe()}"
        )
    stopped = time.monotonic()
    elapsed = stopped - started
    output = worker.output()

    # Every message processed, once.
    assert _consumed(page) == total
    assert output.count('"greeting_composed"') == total
    assert fault_env.depths().get("greetings", 0) == 0
    assert "Killing worker process" not in output

    # Every span the worker ended is lost and counted, none exported: two per message (process + compose).
    processed = _samples(page, "otel_sdk_processor_span_processed_total")
    exported = _samples(page, "otel_sdk_exporter_span_exported_total")
    queued = _samples(page, "otel_sdk_processor_span_queue_size")
    dropped = sum(value for labels, value in processed if labels.get("error_type"))
    failed = sum(value for labels, value in exported if labels.get("error_type"))
    assert {labels.get("error_type", "") for labels, _ in processed} == {"", "export_failing"}
    assert {labels.get("error_type", "") for labels, _ in exported} == {"", CONNECTION_ERROR}
    assert sum(value for labels, value in exported if not labels.get("error_type")) == 0
    assert failed > 0 and dropped > 0
    in_queue = sum(value for _, value in queued)
    assert dropped + failed + in_queue == 2 * total, (dropped, failed, in_queue)
    assert {labels["worker_pid"] for labels, _ in processed} == {str(pid) for pid in pids}

    # Memory bounded: one batch queued and one in the export process per worker process, no RSS growth beyond a
    # generous bound.
    assert all(value <= 2 * BATCH for _, value in queued), queued
    growth = {pid: rss_after[pid] - rss_before[pid] for pid in pids}
    assert all(kib < RSS_GROWTH_BOUND_KIB for kib in growth.values()), (rss_before, rss_after)

    # Logged once per interval per process, never per span or batch, and not by the SDK exporter.
    failing_lines = [line for line in output.splitlines() if "span export failing" in line]
    assert 2 <= len(failing_lines) <= 2 * (elapsed / LOG_INTERVAL + 1), (len(failing_lines), elapsed)
    assert len(failing_lines) * 50 < dropped + failed
    assert not [line for line in output.splitlines() if any(text in line for text in SDK_EXPORTER_LINES)]
    print(  # the figures for docs/reliability.md (pytest -s shows them)
        f"\nfault 4: {total} processed; spans lost {int(dropped + failed)} (failed {int(failed)}, "
        f"dropped {int(dropped)}, queued {int(in_queue)}); 'span export failing' lines {len(failing_lines)} "
        f"in {elapsed:.0f} s; SIGTERM to exit {stopped - stopping:.1f} s; RSS KiB before {rss_before} after {rss_after}"
    )
