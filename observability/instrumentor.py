"""``DramatiqInstrumentor``: our middleware for apps that never import this package (issue 11).

OpenTelemetry's zero-code convention is an instrumentor (``instrument()``/``uninstrument()``) registered
under the ``opentelemetry_instrumentor`` entry point group. ``opentelemetry-instrument dramatiq app`` loads
every such entry point in ``sitecustomize``, before the app runs, after the distro configured the SDK from
``OTEL_*``. Ours is named ``tracedq_dramatiq`` in ``pyproject.toml``: ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``
matches by name, and third-party dramatiq instrumentors take ``dramatiq``.

``Broker.__init__`` is wrapped, so every broker built afterwards gets ``Tracing`` and ``LogContext`` first
through :func:`observability.install`, whatever the subclass. The global broker, if one was already set,
is instrumented at once; it is read from ``dramatiq.broker.global_broker``, because ``get_broker()``
would build a default broker when there is none. Other brokers built before ``instrument()`` are not found.
A broker that already has a ``Tracing`` (the app installs its own) is left alone.

Dramatiq's CLI forks its worker processes after ``sitecustomize`` ran: they inherit the wrapped
``__init__`` and build the app's broker through it; the SDK's batch processor restarts its thread after a
fork, and ``Tracing.after_worker_shutdown`` flushes before the worker leaves through ``os._exit``.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable, Collection
from typing import Any, Final

import dramatiq.broker
from dramatiq.broker import Broker
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]  # see the class
from opentelemetry.trace import TracerProvider

from observability import install
from observability.log_context import LogContext
from observability.tracing import Tracing

__all__ = ["DramatiqInstrumentor"]

_INSTRUMENTS: Final = ("dramatiq >= 2.2",)
_log = logging.getLogger(__name__)


# opentelemetry/instrumentation/instrumentor.py starts with a file-level `# type: ignore`: mypy sees none of
# its names, so BaseInstrumentor is Any here.
class DramatiqInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Put ``Tracing`` and ``LogContext`` on every Dramatiq broker, existing or future. A singleton.

    ``instrument(tracer_provider=...)`` passes the provider to each ``Tracing``; the global one otherwise.
    ``uninstrument()`` restores ``Broker.__init__`` and takes the middleware it added off the brokers, as
    far as nothing else wrapped ``Broker.__init__`` or ``broker.enqueue`` over them in the meantime.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return _INSTRUMENTS

    def _instrument(self, **kwargs: Any) -> None:
        tracer_provider: TracerProvider | None = kwargs.get("tracer_provider")
        self._added: weakref.WeakKeyDictionary[Broker, tuple[Tracing, LogContext]] = weakref.WeakKeyDictionary()
        original: Callable[..., None] = Broker.__init__
        instrumentor = self

        @functools.wraps(original)
        def init(broker: Broker, *args: Any, **kw: Any) -> None:
            original(broker, *args, **kw)
            # A wrapper put over ours keeps calling it after uninstrument(): then it does nothing.
            if instrumentor._wrapper is init:
                instrumentor._add(broker, tracer_provider)

        self._original_init = original
        self._wrapper: Callable[..., None] | None = init
        setattr(Broker, "__init__", init)  # noqa: B010  # mypy refuses an assignment to a method
        existing = dramatiq.broker.global_broker
        if existing is not None:
            self._add(existing, tracer_provider)

    def _uninstrument(self, **kwargs: Any) -> None:
        if Broker.__dict__.get("__init__") is self._wrapper:
            setattr(Broker, "__init__", self._original_init)  # noqa: B010
        self._wrapper = None
        for broker, (tracing, log_context) in list(self._added.items()):
            broker.middleware[:] = [m for m in broker.middleware if m is not tracing and m is not log_context]
            tracing.uninstrument(broker)
        self._added.clear()

    def _add(self, broker: Broker, tracer_provider: TracerProvider | None) -> None:
        """Install our middleware on ``broker`` unless it has a ``Tracing``. Never raises: it runs in ``__init__``."""
        try:
            if any(isinstance(m, Tracing) for m in broker.middleware):
                return
            tracing = install(broker, Tracing(tracer_provider=tracer_provider))
            log_context = next(m for m in broker.middleware if isinstance(m, LogContext))
            self._added[broker] = (tracing, log_context)
        except Exception:
            _log.warning("could not instrument dramatiq broker %r", broker, exc_info=True)
