"""A small MQTT v5 test client: connect, subscribe, publish QoS 1, collect what arrives.

paho runs its network loop in a thread; every received message is appended under a
condition variable, so tests wait for "n messages" with a deadline instead of sleeping.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from posfleet.central.broker_auth import BrokerCredentials

NOT_AUTHORIZED = 0x87
"""MQTT v5 reason code "Not authorized" (PUBACK, SUBACK and CONNACK)."""

BAD_USERNAME_OR_PASSWORD = 0x86
"""MQTT v5 CONNACK reason code "Bad user name or password"."""

_client_numbers = itertools.count(1)


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One PUBLISH the probe received."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class MqttProbe:
    """An MQTT v5 client for tests, owned by one test and closed by it (or its fixture)."""

    def __init__(
        self,
        host: str,
        port: int,
        credentials: BrokerCredentials,
        *,
        client_id: str | None = None,
        clean_start: bool = True,
        session_expiry: int = 0,
        reconnect: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id or f"probe-{credentials.username}-{next(_client_numbers)}"
        self._clean_start = clean_start
        self._session_expiry = session_expiry
        self._client = Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=reconnect,
        )
        self._client.username_pw_set(credentials.username, credentials.password)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._client.on_subscribe = self._on_subscribe
        self._lock = threading.Condition()
        self._connack: ReasonCode | None = None
        self._connected = False
        self._messages: list[ReceivedMessage] = []
        self._pubacks: dict[int, ReasonCode] = {}
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._loop_started = False

    @property
    def connected(self) -> bool:
        """True while the broker has accepted the connection and not dropped it."""
        with self._lock:
            return self._connected

    def try_connect(self, timeout: float = 5.0) -> ReasonCode:
        """Connect and return the CONNACK reason code, whatever it is."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self._session_expiry
        with self._lock:
            self._connack = None
        self._client.connect(
            self.host,
            self.port,
            keepalive=30,
            clean_start=self._clean_start,
            properties=properties,
        )
        if not self._loop_started:
            self._client.loop_start()
            self._loop_started = True
        with self._lock:
            if not self._lock.wait_for(lambda: self._connack is not None, timeout):
                raise AssertionError(f"{self.client_id}: no CONNACK within {timeout:g} s")
            assert self._connack is not None
            return self._connack

    def connect(self, timeout: float = 5.0) -> Self:
        """Connect, failing the test unless the broker accepts the credentials."""
        reason = self.try_connect(timeout)
        if reason.is_failure:
            raise AssertionError(f"{self.client_id}: connection refused: {reason}")
        return self

    def subscribe(self, topic_filter: str, qos: int = 1, timeout: float = 5.0) -> ReasonCode:
        """Subscribe and return the SUBACK reason code (a granted QoS, or a failure)."""
        result, mid = self._client.subscribe(topic_filter, qos)
        if mid is None:
            raise AssertionError(f"{self.client_id}: cannot subscribe: {result}")
        with self._lock:
            if not self._lock.wait_for(lambda: mid in self._subacks, timeout):
                raise AssertionError(f"{self.client_id}: no SUBACK for {topic_filter!r}")
            return self._subacks.pop(mid)[0]

    def publish(
        self, topic: str, payload: bytes | str, *, retain: bool = False, timeout: float = 5.0
    ) -> ReasonCode:
        """Publish with QoS 1 and return the PUBACK reason code.

        Under MQTT v5 Mosquitto answers a publish the ACL forbids with 0x87 Not authorized
        (MQTT 3.1.1 has no way to say so and the message just disappears).
        """
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        with self._lock:
            if not self._lock.wait_for(lambda: info.mid in self._pubacks, timeout):
                raise AssertionError(f"{self.client_id}: no PUBACK for {topic!r}")
            return self._pubacks.pop(info.mid)

    def received(self, topic: str | None = None) -> list[ReceivedMessage]:
        """A snapshot of the messages received so far, optionally on one topic only."""
        with self._lock:
            return [m for m in self._messages if topic is None or m.topic == topic]

    def wait_for_messages(
        self, n: int, timeout: float = 5.0, *, topic: str | None = None
    ) -> list[ReceivedMessage]:
        """Wait until at least ``n`` messages (on ``topic``, if given) have arrived."""
        return self.wait_until(
            lambda messages: len(messages) >= n,
            timeout,
            topic=topic,
            description=f"{n} message(s)" + (f" on {topic!r}" if topic else ""),
        )

    def wait_until(
        self,
        predicate: Callable[[list[ReceivedMessage]], bool],
        timeout: float = 5.0,
        *,
        topic: str | None = None,
        description: str = "a matching message",
    ) -> list[ReceivedMessage]:
        """Wait until ``predicate`` holds for the received messages; return them."""

        def selected() -> list[ReceivedMessage]:
            return [m for m in self._messages if topic is None or m.topic == topic]

        with self._lock:
            if not self._lock.wait_for(lambda: predicate(selected()), timeout):
                raise AssertionError(
                    f"{self.client_id}: timed out after {timeout:g} s waiting for "
                    f"{description}; received {[(m.topic, m.payload) for m in selected()]}"
                )
            return selected()

    def wait_disconnected(self, timeout: float = 5.0) -> None:
        """Wait until the broker has closed the connection."""
        with self._lock:
            if not self._lock.wait_for(lambda: not self._connected, timeout):
                raise AssertionError(f"{self.client_id}: still connected after {timeout:g} s")

    def close(self) -> None:
        """Disconnect cleanly and stop the network thread."""
        if self._loop_started:
            self._client.disconnect()
            self._client.loop_stop()
            self._loop_started = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _on_connect(
        self,
        client: Client,
        userdata: Any,
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            self._connack = reason_code
            self._connected = not reason_code.is_failure
            self._lock.notify_all()

    def _on_disconnect(
        self,
        client: Client,
        userdata: Any,
        flags: DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            self._connected = False
            self._lock.notify_all()

    def _on_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        received = ReceivedMessage(
            message.topic, bytes(message.payload), message.qos, message.retain
        )
        with self._lock:
            self._messages.append(received)
            self._lock.notify_all()

    def _on_publish(
        self,
        client: Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        with self._lock:
            self._pubacks[mid] = reason_code
            self._lock.notify_all()

    def _on_subscribe(
        self,
        client: Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._lock:
            self._subacks[mid] = reason_codes
            self._lock.notify_all()
