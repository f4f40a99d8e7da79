"""Dramatiq actors: importing this package sets up the broker, logging and tracing, then declares every actor.

``dramatiq actors`` runs the worker; a producer service that imports ``actors`` and calls
``greet.send("Ada")`` publishes with the same trace propagation.
"""

from __future__ import annotations

from actors import catalog, schedules
from actors.broker import broker
from actors.greetings import greet
from actors.orders import notify_customer, place_order, reserve_inventory
from actors.users import register_user, send_welcome_email

__all__ = [
    "broker",
    "catalog",
    "greet",
    "notify_customer",
    "place_order",
    "register_user",
    "reserve_inventory",
    "schedules",
    "send_welcome_email",
]
