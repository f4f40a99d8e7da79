"""What every setup function here reads first: the ``OTEL_*`` variables, unless the SDK is disabled.

``configure_tracing``, ``configure_metrics`` and ``configure_log_export`` each honour ``OTEL_SDK_DISABLED``
the way the SDK's own auto-configuration does, and take an ``environ`` mapping so tests need not touch
``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["sdk_environment"]


def sdk_environment(environ: Mapping[str, str] | None) -> Mapping[str, str] | None:
    """``environ`` (``os.environ`` when None), or None when ``OTEL_SDK_DISABLED=true`` disables the SDK."""
    env = os.environ if environ is None else environ
    return None if env.get("OTEL_SDK_DISABLED", "").lower() == "true" else env
