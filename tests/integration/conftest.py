"""Fixtures for tests that talk to real servers or processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.environment.receiver import OtlpReceiver


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP trace receiver on an ephemeral 127.0.0.1 port, stopped after the test."""
    with OtlpReceiver() as receiver:
        yield receiver
