"""``flush_telemetry``: the one flush of a process's telemetry, in order, within one deadline, never raising."""

from __future__ import annotations

import logging
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider

from observability import flush_telemetry


class RecordingProvider:
    def __init__(self, name: str, calls: list[tuple[str, int]], *, takes: float = 0.0, fails: bool = False) -> None:
        self.name, self.calls, self.takes, self.fails = name, calls, takes, fails

    def force_flush(self, timeout_millis: int) -> bool:
        self.calls.append((self.name, timeout_millis))
        time.sleep(self.takes)
        if self.fails:
            raise RuntimeError("collector gone")
        return True


def test_spans_then_metrics_within_one_deadline() -> None:
    calls: list[tuple[str, int]] = []
    flush_telemetry(
        1_000,
        log_records=False,
        tracer_provider=RecordingProvider("spans", calls, takes=0.3),
        meter_provider=RecordingProvider("metrics", calls),
    )
    assert [name for name, _ in calls] == ["spans", "metrics"]
    assert 900 <= calls[0][1] <= 1_000
    assert calls[1][1] <= 700  # what the span flush left, not a second full timeout


def test_a_failed_flush_is_logged_and_the_next_one_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[tuple[str, int]] = []
    with caplog.at_level(logging.WARNING, logger="observability.flushing"):
        flush_telemetry(
            log_records=False,
            tracer_provider=RecordingProvider("spans", calls, fails=True),
            meter_provider=RecordingProvider("metrics", calls),
        )
    assert [name for name, _ in calls] == ["spans", "metrics"]
    assert [r.getMessage() for r in caplog.records] == ["could not flush spans"]


def test_providers_that_cannot_flush_are_skipped() -> None:
    flush_telemetry(100, tracer_provider=object(), meter_provider=object())  # the API's no-op ones have no force_flush


def test_only_the_signals_asked_for() -> None:
    calls: list[tuple[str, int]] = []
    provider = TracerProvider()
    flush_telemetry(
        100, spans=False, log_records=False, tracer_provider=provider, meter_provider=RecordingProvider("m", calls)
    )
    assert [name for name, _ in calls] == ["m"]
