"""The in-test OTLP/HTTP receiver lives in ``cli.otlp_receiver`` (the demo uses it too)."""

from __future__ import annotations

from cli.otlp_receiver import OtlpReceiver, ReceivedSpan, decode_request

__all__ = ["OtlpReceiver", "ReceivedSpan", "decode_request"]
