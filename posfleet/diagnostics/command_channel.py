"""Sending commands to terminals over MQTT and awaiting their results.

A :class:`CommandSender` is what playbooks need; :class:`MqttCommandSender` is the real
one: it publishes each :class:`~posfleet.contract.Command` on the terminal's ``cmd``
topic with the central service's broker credentials and waits for the ``cmd/result``
with the same id, up to a server-side deadline. Its own subscription is not shared, so
every central instance sees the results of the commands it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, Protocol, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel

from posfleet.contract import (
    QOS,
    Channel,
    Command,
    CommandResult,
    PayloadError,
    decode,
    encode,
    topic,
    utcnow,
)
from posfleet.diagnostics.errors import CommandTimeoutError, DiagnosticsError
from posfleet.tls_contexts import TlsFiles

log = logging.getLogger(__name__)
RESULTS_FILTER = "pos/v1/+/cmd/result"


class CommandSender(Protocol):
    """Runs one command on a terminal and returns its result."""

    async def send(
        self,
        terminal_id: str,
        name: str,
        args: dict[str, Any],
        *,
        issued_by: str,
        timeout_s: float,
    ) -> CommandResult:
        """Send, wait for the result; raise :class:`CommandTimeoutError` at the deadline."""
        ...


@dataclass(frozen=True)
class BrokerLogin:
    """Where and as whom the command channel connects (the central service's user)."""

    host: str
    port: int
    username: str
    password: str
    client_id: str = "posfleet-commands"
    tls: TlsFiles | None = None
    """Connect over TLS with these files (``mqtts://``); ``None``: plain MQTT."""


_ids = itertools.count(1)


def new_command_id() -> str:
    """A command id unique across restarts and instances."""
    return f"c{next(_ids)}-{secrets.token_hex(6)}"


class MqttCommandSender:
    """The real command channel; an async context manager.

    It is also the centre's one publisher of downlink messages (:meth:`publish`), which
    the firmware offers go through.
    """

    def __init__(self, login: BrokerLogin) -> None:
        self.login = login
        self._waiting: dict[str, asyncio.Future[CommandResult]] = {}
        # PUBACKs awaited by publish(), by mid; paho's thread resolves them.
        self._acks: dict[int, asyncio.Future[None]] = {}
        """PUBACK futures by mid; only the event loop's thread touches it."""
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
        """Wait until results can be received; raise :class:`DiagnosticsError` otherwise."""
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            raise DiagnosticsError(
                f"command channel: not subscribed on {self.login.host}:{self.login.port}"
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

    async def send(
        self,
        terminal_id: str,
        name: str,
        args: dict[str, Any],
        *,
        issued_by: str,
        timeout_s: float,
    ) -> CommandResult:
        """Publish the command and wait for its result, at most ``timeout_s`` seconds."""
        now = utcnow()
        command = Command(
            id=new_command_id(),
            name=name,
            args=args,
            issued_by=issued_by,
            issued_at=now,
            # The terminal drops it after the deadline too, so a late terminal does not
            # run a command nobody waits for any more.
            expires_at=now + timedelta(seconds=timeout_s),
        )
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._waiting[command.id] = future
        try:
            async with asyncio.timeout(timeout_s):
                # Not subscribed to results yet (start-up, reconnecting): a result sent
                # now would be lost, so wait for the subscription within the same deadline.
                await self._ready.wait()
                self._client.publish(topic(terminal_id, Channel.CMD), encode(command), qos=QOS)
                return await future
        except TimeoutError:
            raise CommandTimeoutError(terminal_id, command.id, timeout_s) from None
        finally:
            self._waiting.pop(command.id, None)

    async def publish(
        self, terminal_id: str, channel: Channel, payload: BaseModel, *, timeout_s: float = 10.0
    ) -> None:
        """Publish ``payload`` on the terminal's ``channel`` (QoS 1, never retained).

        Returns once the broker has acknowledged it (PUBACK); raises
        :class:`DiagnosticsError` if it is not connected or does not answer within
        ``timeout_s``. Nothing is queued for later: a caller that gets the error tries
        again itself, with fresh content.
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
                    raise DiagnosticsError(f"cannot publish {channel} to {terminal_id}: {why}")
                mid = info.mid
                acked: asyncio.Future[None] = loop.create_future()
                self._acks[mid] = acked
                await acked
        except TimeoutError:
            raise DiagnosticsError(
                f"the broker did not acknowledge {channel} for {terminal_id} within {timeout_s}s"
            ) from None
        finally:
            if mid is not None:
                self._acks.pop(mid, None)

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
            log.error("command channel refused: %s", reason_code)
            return
        client.subscribe(RESULTS_FILTER, qos=QOS)

    def _on_disconnect(self, *_args: object) -> None:
        self._call(self._ready.clear)

    def _on_subscribe(self, *_args: object) -> None:
        self._call(self._ready.set)

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            message = decode(msg.topic, bytes(msg.payload))
        except PayloadError as exc:
            log.warning("command channel: ignoring a bad result: %s", exc)
            return
        if isinstance(message.payload, CommandResult):
            self._call(self._resolve, message.payload)

    def _resolve(self, result: CommandResult) -> None:
        future = self._waiting.get(result.id)
        if future is not None and not future.done():
            future.set_result(result)

    def _call(self, func: Any, *args: Any) -> None:
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
        future.set_exception(DiagnosticsError(f"the broker refused the message: {refusal}"))
