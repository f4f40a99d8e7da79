"""The SDK span exporter the standard variables ask for, in whichever process exports.

The export process (``observability/sdk/export_child.py``) and the in-process fallback both build their
exporter here, from ``OTEL_TRACES_EXPORTER`` and ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL``; the SDK's exporters
read the rest themselves (endpoint, headers, compression, timeout, certificates).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

# otel.component.type of the SDK's OTLP exporters, by the module that defines them (subclasses count too).
_COMPONENT_TYPES: Final = {
    "opentelemetry.exporter.otlp.proto.http.trace_exporter": "otlp_http_span_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter": "otlp_grpc_span_exporter",
}

__all__ = ["component_type_of", "exporter_component_type", "exporter_name", "make_exporter", "otlp_uses_grpc"]


def otlp_uses_grpc(env: Mapping[str, str], signal: str) -> bool:
    """Whether ``OTEL_EXPORTER_OTLP_<signal>_PROTOCOL``, else ``OTEL_EXPORTER_OTLP_PROTOCOL``, asks for gRPC
    (``signal`` is ``TRACES``, ``METRICS`` or ``LOGS``); HTTP/protobuf otherwise, the SDK's default."""
    protocol = env.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    return protocol == "grpc"


def exporter_name(env: Mapping[str, str]) -> str:
    """``OTEL_TRACES_EXPORTER``: ``otlp`` (the default), ``console`` or ``none``.

    Raises:
        ValueError: another name.
    """
    name = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if name not in ("otlp", "console", "none"):
        raise ValueError(f"OTEL_TRACES_EXPORTER={name!r} is not supported (use otlp, console or none)")
    return name


def make_exporter(env: Mapping[str, str]) -> SpanExporter | None:
    """The exporter named by ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console`` or ``none``; ``otlp`` by default).

    Raises:
        ValueError: another name.
    """
    name = exporter_name(env)
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if otlp_uses_grpc(env, "TRACES"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()


def exporter_component_type(env: Mapping[str, str]) -> str | None:
    """``otel.component.type`` of the exporter ``make_exporter`` builds for ``env`` (None: not an OTLP one)."""
    if exporter_name(env) != "otlp":
        return None
    return "otlp_grpc_span_exporter" if otlp_uses_grpc(env, "TRACES") else "otlp_http_span_exporter"


def component_type_of(exporter: object) -> str | None:
    """``otel.component.type`` of an exporter object (None: not an OTLP one)."""
    return next(
        (_COMPONENT_TYPES[c.__module__] for c in type(exporter).__mro__ if c.__module__ in _COMPONENT_TYPES), None
    )
