"""Test harness: real servers started per session, clients that collect, waits with deadlines."""

from posfleet.central.mosquitto import free_port
from tests.harness.binaries import require_binary
from tests.harness.mqtt_probe import (
    BAD_USERNAME_OR_PASSWORD,
    NOT_AUTHORIZED,
    MqttProbe,
    ReceivedMessage,
)
from tests.harness.private_broker import PrivateBroker
from tests.harness.waiting import async_wait_for, wait_for

__all__ = [
    "BAD_USERNAME_OR_PASSWORD",
    "NOT_AUTHORIZED",
    "MqttProbe",
    "PrivateBroker",
    "ReceivedMessage",
    "async_wait_for",
    "free_port",
    "require_binary",
    "wait_for",
]
