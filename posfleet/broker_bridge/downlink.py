"""The centre's downlink: every message it sends to terminals goes out through here.

:class:`Publisher` is the seam that firmware offers, cancel notices and staff commands
publish through; :class:`CommandLink` adds what playbooks need on top: publish a command
and hand back the terminal's ``cmd/result`` with the same id.

:class:`MqttPublisher` is the real one, with the central service's broker credentials
(:class:`BrokerLogin`). It publishes with QoS 1, never retained, and waits for the
broker's PUBACK. Its subscription to the results is not shared, so every central
instance sees the results of the commands it sent. :class:`MemoryPublisher` is the
in-memory one for the tests of one component.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel

from posfleet.broker_bridge.errors import BridgeError, NotSubscribedError
from posfleet.contract import (
    QOS,
    Channel,
    Command,
    CommandResult,
    FirmwareOffer,
    PayloadError,
    channel_filter,
    decode,
    encode,
    topic,
)
from posfleet.tls_contexts import TlsFiles

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """Publishes one downlink message to a terminal and returns once the broker has it."""

    async def publish(
        self, terminal_id: str, channel: Channel, payload: BaseModel, *, timeout_s: float = 10.0
    ) -> None:
        """Raise any exception if the message did not reach the broker."""
        ...


class CommandLink(Publisher, Protocol):
    """A :class:`Publisher` that also brings a command's result back."""

    async def request(
        self, terminal_id: str, command: Command, *, timeout_s: float
    ) -> CommandResult:
        """Publish ``command`` on the terminal's ``cmd`` topic and return its result.

        Raise :class:`TimeoutError` if no result with the command's id arrives within
        ``timeout_s`` seconds.
        """
        ...


@dataclass(frozen=True)
class BrokerLogin:
    """Where and as whom the downlink connects (the central service's user)."""

    host: str
    port: int
    username: str
    password: str
    client_id: str = "posfleet-commands"
    tls: TlsFiles | None = None
    """Connect over TLS with these files (``mqtts://``); ``None``: plain MQTT."""


class MqttPublisher:
    """The centre's one MQTT publisher of downlink messages, a :class:`CommandLink`.

    An async context manager: it connects on entry, in the background, and subscribes to
    every terminal's ``cmd/result``; :meth:`wait_ready` waits for that.
    """

    def __init__(self, login: BrokerLogin) -> None:
        self.login = login
        self._waiting: dict[str, asyncio.Future[CommandResult]] = {}
        self._acks: dict[int, asyncio.Future[None]] = {}
        """PUBACK futures by mid; paho's thread resolves them through the event loop."""
        self._ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{login.client_id}-{secrets.token_hex(4)}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(login.username, login.password)
        if login.tls is not None:
            self._client.tls_set_context(login.tls.context())
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        # Non-blocking, like the ingest: a broker that is down at start-up delays
        # commands, it does not stop the central service from starting.
        self._client.connect_async(self.login.host, self.login.port, keepalive=30)
        self._client.loop_start()
        return self

    async def wait_ready(self, timeout: float) -> None:  # noqa: ASYNC109 (part of the API)
        """Wait until results can be received; raise :class:`NotSubscribedError` otherwise."""
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            raise NotSubscribedError(
                f"{self.login.host}:{self.login.port}", "the downlink is not connected"
            ) from None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        for future in self._waiting.values():
            future.cancel()

    async def publish(
        self, terminal_id: str, channel: Channel, payload: BaseModel, *, timeout_s: float = 10.0
    ) -> None:
        """Publish ``payload`` on the terminal's ``channel`` (QoS 1, never retained).

        Returns once the broker has acknowledged it (PUBACK); raises
        :class:`BridgeError` if it is not connected, refuses the message or does not
        answer within ``timeout_s``. Nothing is queued for later: a caller that gets the
        error tries again itself, with fresh content.
        """
        loop = asyncio.get_running_loop()
        mid: int | None = None
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
                # No lock around paho's publish: paho's thread holds its own message lock
                # while it runs on_publish, so a lock taken on both sides deadlocks. The
                # PUBACK is settled on this loop's thread (_acked), which cannot run before
                # the future is registered below: nothing yields in between.
                info = self._client.publish(topic(terminal_id, channel), encode(payload), qos=QOS)
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    why = mqtt.error_string(info.rc)
                    raise BridgeError(f"cannot publish {channel} to {terminal_id}: {why}")
                mid = info.mid
                acked: asyncio.Future[None] = loop.create_future()
                self._acks[mid] = acked
                await acked
        except TimeoutError:
            raise BridgeError(
                f"the broker did not acknowledge {channel} for {terminal_id} within {timeout_s}s"
            ) from None
        finally:
            if mid is not None:
                self._acks.pop(mid, None)

    async def request(
        self, terminal_id: str, command: Command, *, timeout_s: float
    ) -> CommandResult:
        """Publish ``command`` and wait for its result, at most ``timeout_s`` seconds.

        Raises :class:`TimeoutError` at the deadline, whatever kept the result away (the
        broker, the terminal, a command the broker never took).
        """
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._waiting[command.id] = future
        try:
            async with asyncio.timeout(timeout_s):
                # Not subscribed to results yet (start-up, reconnecting): a result sent
                # now would be lost, so wait for the subscription within the same deadline.
                await self._ready.wait()
                self._client.publish(topic(terminal_id, Channel.CMD), encode(command), qos=QOS)
                return await future
        finally:
            self._waiting.pop(command.id, None)

    def _acked(self, mid: int, refusal: str | None) -> None:
        future = self._acks.pop(mid, None)
        if future is not None:
            _settle(future, refusal)

    # -- paho's thread -------------------------------------------------------------------

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reason_code: ReasonCode,
        _properties: object,
    ) -> None:
        self._call(self._acked, mid, None if not reason_code.is_failure else str(reason_code))

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: object,
    ) -> None:
        if reason_code.is_failure:
            log.error("downlink refused: %s", reason_code)
            return
        client.subscribe(channel_filter(Channel.CMD_RESULT), qos=QOS)

    def _on_disconnect(self, *_args: object) -> None:
        self._call(self._ready.clear)

    def _on_subscribe(self, *_args: object) -> None:
        self._call(self._ready.set)

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            message = decode(msg.topic, bytes(msg.payload))
        except PayloadError as exc:
            log.warning("downlink: ignoring a bad command result: %s", exc)
            return
        if isinstance(message.payload, CommandResult):
            self._call(self._resolve, message.payload)

    def _resolve(self, result: CommandResult) -> None:
        future = self._waiting.get(result.id)
        if future is not None and not future.done():
            future.set_result(result)

    def _call(self, func: Callable[..., object], *args: Any) -> None:
        # A closed loop means we are shutting down and nobody waits any more.
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(func, *args)


def _settle(future: asyncio.Future[None], refusal: str | None) -> None:
    if future.done():
        return
    if refusal is None:
        future.set_result(None)
    else:
        future.set_exception(BridgeError(f"the broker refused the message: {refusal}"))


Answer = Callable[[str, Command], CommandResult | None]
"""How the terminals behind a :class:`MemoryPublisher` answer a command (None: silence)."""


@dataclass
class MemoryPublisher:
    """In-memory :class:`CommandLink` for tests of one component: records what was published.

    Commands sent with :meth:`request` are answered by :attr:`answer`; without one, or
    with an answer for another command id, the terminal stays silent and the request
    times out, as the real one does.
    """

    sent: list[tuple[str, Channel, BaseModel]] = field(default_factory=list)
    """Every message the broker took, oldest first: (terminal id, channel, payload)."""
    failing: bool = False
    """The broker is away: publishing raises :class:`BridgeError`, requests time out."""
    answer: Answer | None = None
    """What the terminals answer to :meth:`request`; None: they stay silent."""

    async def publish(
        self, terminal_id: str, channel: Channel, payload: BaseModel, *, timeout_s: float = 10.0
    ) -> None:
        """Record the message, or raise :class:`BridgeError` while :attr:`failing`."""
        if self.failing:
            raise BridgeError("the in-memory broker is away")
        self.sent.append((terminal_id, channel, payload))

    async def request(
        self, terminal_id: str, command: Command, *, timeout_s: float
    ) -> CommandResult:
        """Record the command and return :attr:`answer`'s result for it.

        Raises :class:`TimeoutError` after ``timeout_s`` seconds when there is none.
        """
        result = None
        if not self.failing:
            self.sent.append((terminal_id, Channel.CMD, command))
            if self.answer is not None:
                result = self.answer(terminal_id, command)
        if result is None or result.id != command.id:
            await asyncio.sleep(timeout_s)
            raise TimeoutError(f"no result of {command.id} from {terminal_id} in {timeout_s}s")
        return result

    def offers(self, terminal_id: str | None = None) -> list[FirmwareOffer]:
        """The firmware offers published so far (to one terminal), oldest first."""
        return [
            payload
            for tid, channel, payload in self.sent
            if channel is Channel.FW_OFFER
            and isinstance(payload, FirmwareOffer)
            and terminal_id in (None, tid)
        ]

    def commands(self, terminal_id: str | None = None) -> list[Command]:
        """The commands published so far (to one terminal), oldest first."""
        return [
            payload
            for tid, channel, payload in self.sent
            if channel is Channel.CMD
            and isinstance(payload, Command)
            and terminal_id in (None, tid)
        ]
