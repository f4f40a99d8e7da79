"""The in-test OTLP/HTTP receiver lives in ``cli.otlp_receiver`` (the demo uses it too).

Tests import it from here only, so that where it lives is said in this one line.
"""

from __future__ import annotations

from cli.otlp_receiver import OtlpReceiver, ReceivedSpan, decode_request

__all__ = ["OtlpReceiver", "ReceivedSpan", "decode_request"]
