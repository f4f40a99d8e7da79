"""Dramatiq actors: importing this package sets up the broker, logging and tracing, then declares every actor.

``dramatiq actors`` runs the worker; a producer service that imports ``actors`` and calls
``greet.send("Ada")`` publishes with the same trace propagation.
"""

from __future__ import annotations

from actors.broker import broker
from actors.greetings import greet

__all__ = ["broker", "greet"]
