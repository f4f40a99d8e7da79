"""The one OTLP/HTTP receiver: real protobuf in, plain records (or span counts) out."""

from __future__ import annotations

from otlp_receiver.receiver import (
    OtlpReceiver,
    ReceivedLog,
    ReceivedSpan,
    ReceiverSink,
    decode_logs_request,
    decode_request,
)

__all__ = ["OtlpReceiver", "ReceivedLog", "ReceivedSpan", "ReceiverSink", "decode_logs_request", "decode_request"]
