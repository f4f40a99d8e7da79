"""Our spelled-out convention keys are the OpenTelemetry semantic-conventions package's, letter for letter."""

from __future__ import annotations

from opentelemetry.semconv._incubating.attributes import messaging_attributes as messaging
from opentelemetry.semconv.attributes import error_attributes, server_attributes
from opentelemetry.semconv.schemas import Schemas

from observability import semconv


def test_messaging_keys_match_the_conventions_package() -> None:
    for name in (
        "MESSAGING_SYSTEM",
        "MESSAGING_OPERATION_TYPE",
        "MESSAGING_OPERATION_NAME",
        "MESSAGING_DESTINATION_NAME",
        "MESSAGING_MESSAGE_ID",
        "MESSAGING_MESSAGE_BODY_SIZE",
        "MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY",
        "MESSAGING_RABBITMQ_MESSAGE_DELIVERY_TAG",
    ):
        assert getattr(semconv, name) == getattr(messaging, name), name


def test_general_keys_and_schema_match_the_conventions_package() -> None:
    assert semconv.ERROR_TYPE == error_attributes.ERROR_TYPE
    assert semconv.SERVER_ADDRESS == server_attributes.SERVER_ADDRESS
    assert semconv.SERVER_PORT == server_attributes.SERVER_PORT
    assert Schemas.V1_44_0.value == semconv.SCHEMA_URL


def test_every_key_is_unique() -> None:
    keys = [value for name, value in vars(semconv).items() if name.isupper() and isinstance(value, str)]
    keys.remove(semconv.SCHEMA_URL)
    duplicates = {key for key in keys if keys.count(key) > 1}
    assert duplicates == set()
