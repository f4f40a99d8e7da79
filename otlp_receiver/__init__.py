"""The one OTLP/HTTP receiver: real protobuf in, plain records (or span counts) out.

Tests, ``tracedq demo --broker amqp://...`` and ``tracedq dev``'s collector run :class:`OtlpReceiver` in a
thread; benchmarks run it as its own process that only counts spans (``python -m otlp_receiver.counting``).
Modules: ``server`` (the HTTP handler), ``decoding`` (protobuf to records), ``records``, ``receiver``,
``counting``.
"""

from __future__ import annotations

from otlp_receiver.decoding import decode_logs_request, decode_request
from otlp_receiver.receiver import OtlpReceiver
from otlp_receiver.records import ReceivedLog, ReceivedSpan, ReceiverSink

__all__ = ["OtlpReceiver", "ReceivedLog", "ReceivedSpan", "ReceiverSink", "decode_logs_request", "decode_request"]
