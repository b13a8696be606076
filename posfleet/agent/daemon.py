"""The agent daemon: poll the terminal, write every report to the outbox, drain it uplink.

Four named tasks share one :class:`asyncio.TaskGroup`:

- ``health``: every ``health_interval_s`` read the terminal's health and store a report;
- ``faults``: every ``fault_poll_s`` ask the terminal for new faults and store each as an
  event the moment it is seen;
- ``commands``: run the remote commands the centre sends, one at a time, and store each
  result in the outbox (``firmware_cancel`` is answered by the firmware updater);
- ``firmware``: take firmware offers and work on the current update
  (:mod:`posfleet.agent.firmware_updater`, on standby until the first offer:
  :mod:`posfleet.agent.firmware_standby`); its statuses go through the outbox too;
- ``drain``: publish what the outbox holds, oldest first, and delete each entry only once
  the broker acknowledged it (so a crash or an outage never loses a report).

None of them ends on an error: a dead serial link becomes one fault event, a broker that
refuses a message costs that message (counted), a full disk or an unexpected bug is
logged and the step is tried again at its next tick.

What the loop publishes (state, inventory, health, events) is built as plain data and
encoded by :mod:`posfleet.agent.wire`, checked against the contract's schema, without
pydantic. Commands and firmware offers are validated with the contract's models, which
are imported when the first one arrives (or at start if one was cut short by a restart):
an idle agent never loads pydantic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from posfleet import __version__
from posfleet.agent import wire
from posfleet.agent.drivers.base import DetectedFault, HealthData, TerminalDriver, TerminalIdentity
from posfleet.agent.errors import OutboxError, UplinkError
from posfleet.agent.firmware_standby import FirmwareStandby
from posfleet.agent.outbox import EntryKind, Outbox
from posfleet.agent.serial.errors import SerialLinkError
from posfleet.agent.uplink import Retained, Uplink
from posfleet.async_tasks import run_every
from posfleet.contract import Channel, Component, Severity, utcnow

if TYPE_CHECKING:
    from posfleet.agent.commands import CommandDispatcher
    from posfleet.agent.firmware_config import UpdaterConfig

log = logging.getLogger(__name__)

DRAIN_WINDOW = 20
"""Messages in flight at once while draining; paho keeps them in order on one connection."""

RETRY_AFTER_ERROR_S = 1.0
"""Pause of the drain after the outbox itself failed (disk full, I/O error)."""


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """Who this agent is, beyond what the terminal says about itself."""

    terminal_id: str
    boot_id: str
    site_id: str = ""
    timezone: str = "UTC"
    merchant_name: str = ""
    site_name: str = ""
    agent_version: str = __version__


def state_payload(identity: AgentIdentity, *, online: bool, now: datetime | None = None) -> bytes:
    """The retained ``state`` message: birth when online, LWT / goodbye when not."""
    return wire.encode(
        Channel.STATE,
        {
            "online": online,
            "agent_version": identity.agent_version,
            "boot_id": identity.boot_id,
            "ts": now or utcnow(),
        },
    )


def inventory_payload(identity: AgentIdentity, terminal: TerminalIdentity) -> bytes:
    """The retained ``inventory`` message built from what the terminal reports."""
    return wire.encode(
        Channel.INVENTORY,
        {
            "model": terminal.model,
            "serial": terminal.serial,
            "hw_revision": terminal.hw_revision,
            "firmware_version": terminal.firmware_version,
            "app_versions": terminal.app_versions,
            "agent_version": identity.agent_version,
            "merchant_id": terminal.merchant_id,
            "site_id": identity.site_id,
            "merchant_name": identity.merchant_name,
            "site_name": identity.site_name,
            "timezone": identity.timezone,
            "capabilities": terminal.capabilities,
            "ts": utcnow(),
        },
    )


class Agent:
    """One terminal's agent: driver in, outbox in the middle, uplink out."""

    def __init__(
        self,
        identity: AgentIdentity,
        driver: TerminalDriver,
        uplink: Uplink,
        outbox: Outbox,
        *,
        health_interval_s: float,
        fault_poll_s: float,
        firmware: UpdaterConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        observed: Callable[[HealthData], HealthData] | None = None,
    ) -> None:
        self.identity = identity
        self.observed = observed
        """Adds what the agent saw on a passed-through ECR link to each health report."""
        self.driver = driver
        self.uplink = uplink
        self.outbox = outbox
        self.health_interval_s = health_interval_s
        self.fault_poll_s = fault_poll_s
        self._clock = clock
        self._serial = asyncio.Lock()
        self._outbox_changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._link_fault_open = False
        self._announced = False
        if firmware is not None and not firmware.terminal_id:
            # The download service checks the token was issued to the terminal asking.
            firmware = dataclasses.replace(firmware, terminal_id=identity.terminal_id)
        self.firmware = (
            None
            if firmware is None
            else FirmwareStandby(
                driver,
                outbox,
                self._serial,
                firmware,
                on_status=self._outbox_changed.set,
                on_terminal_changed=self.refresh_inventory,
                clock=clock,
            )
        )
        """The firmware updater (on standby until an offer comes); None: updates are off."""
        self._commands: CommandDispatcher | None = None
        self.reports_stored = 0
        self.events_stored = 0
        self.refused = 0
        """Outbox entries the broker refused (ACL, size): dropped, since resending cannot help."""
        self.step_errors = 0
        """Polls that failed with an unexpected error (logged, retried at the next tick)."""

    @property
    def commands(self) -> CommandDispatcher:
        """The remote-command dispatcher, built on first use (it validates with pydantic)."""
        if self._commands is None:
            from posfleet.agent.commands import CommandDispatcher

            self._commands = CommandDispatcher(
                self.driver,
                self.outbox,
                self._serial,
                on_result=self._outbox_changed.set,
                clock=self._clock,
                firmware=self.firmware,
            )
        return self._commands

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current step."""
        self._stop.set()

    async def run(self) -> None:
        """Run until :meth:`stop` is called (or the task is cancelled)."""
        self.uplink.set_retained(
            [Retained(Channel.STATE, state_payload(self.identity, online=True))]
        )
        terminal = await self._identify()
        if terminal is not None:
            self._announce(terminal)
        try:
            if self.outbox.interrupted_commands():
                self.commands.answer_interrupted()
        except OutboxError as exc:
            log.error("%s: cannot answer interrupted commands: %s", self.identity.terminal_id, exc)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(
                    self._every(self.health_interval_s, self.poll_health), name="health"
                )
                tasks.create_task(self._every(self.fault_poll_s, self.poll_faults), name="faults")
                tasks.create_task(self._take_commands(), name="commands")
                if self.firmware is not None:
                    tasks.create_task(self.firmware.run(self.uplink.next_offer), name="firmware")
                tasks.create_task(self._drain(), name="drain")
                tasks.create_task(self._stopper(), name="stopper")
        except* _Stopped:
            pass

    def _announce(self, terminal: TerminalIdentity) -> None:
        self._announced = True
        self.uplink.set_retained(
            [
                Retained(Channel.STATE, state_payload(self.identity, online=True)),
                Retained(Channel.INVENTORY, inventory_payload(self.identity, terminal)),
            ]
        )

    async def refresh_inventory(self) -> None:
        """Identify the terminal again and republish the inventory (new firmware version)."""
        terminal = await self._identify()
        if terminal is not None:
            self._announce(terminal)

    async def _identify(self) -> TerminalIdentity | None:
        try:
            async with self._serial:
                return await self.driver.identify()
        except SerialLinkError as exc:
            log.error("%s: cannot identify the terminal: %s", self.identity.terminal_id, exc)
            self._link_failed(exc)
            return None
        except Exception:
            # Start without an inventory rather than not at all; health retries identify.
            self.step_errors += 1
            log.exception("%s: identifying the terminal failed", self.identity.terminal_id)
            return None

    async def poll_health(self) -> None:
        """Read health once and store it as the next report."""
        try:
            async with self._serial:
                metrics = await self.driver.read_health_data()
            if self.observed is not None:
                metrics = self.observed(metrics)
        except SerialLinkError as exc:
            log.warning("%s: health read failed: %s", self.identity.terminal_id, exc)
            self._link_failed(exc)
            return
        if self._link_fault_open or not self._announced:
            # The link is back (or identify failed at start): tell the centre who it is.
            self._link_fault_open = False
            terminal = await self._identify()
            if terminal is not None:
                self._announce(terminal)
        ts = self._clock()
        self.outbox.append(
            Channel.HEALTH,
            EntryKind.HEALTH,
            lambda seq: wire.encode(
                Channel.HEALTH,
                {
                    "seq": seq,
                    "ts": ts,
                    "interval_s": max(1, round(self.health_interval_s)),
                    "metrics": metrics,
                },
            ),
        )
        self.reports_stored += 1
        self._outbox_changed.set()

    async def poll_faults(self) -> None:
        """Ask the terminal for new faults and store each as an event."""
        try:
            async with self._serial:
                faults = await self.driver.read_faults()
        except SerialLinkError as exc:
            self._link_failed(exc)
            return
        for fault in faults:
            self.store_event(fault)

    def store_event(self, fault: DetectedFault) -> None:
        """Store one fault event in the outbox, ready to send."""
        ts = self._clock()
        self.outbox.append(
            Channel.EVENT,
            EntryKind.EVENT,
            lambda seq: wire.encode(
                Channel.EVENT,
                {
                    "seq": seq,
                    "ts": ts,
                    "code": fault.code,
                    "component": fault.component,
                    "severity": fault.severity,
                    "detail": fault.detail[:1024],
                    "zvt_result_code": fault.zvt_result_code,
                },
            ),
        )
        self.events_stored += 1
        self._outbox_changed.set()
        if self.firmware is not None:
            self.firmware.observe_fault(fault)

    def _link_failed(self, exc: SerialLinkError) -> None:
        # One event per outage of the serial link, not one per failed poll.
        if self._link_fault_open:
            return
        self._link_fault_open = True
        self.store_event(
            DetectedFault(
                code="serial_link.no_response",
                component=Component.SERIAL_LINK,
                severity=Severity.ERROR,
                detail=f"terminal does not answer on its serial link: {exc}",
            )
        )

    async def _take_commands(self) -> None:
        while True:
            incoming = await self.uplink.next_command()
            await self.commands.handle(incoming)

    async def _every(self, period: float, step: Callable[[], object]) -> None:
        def failed(exc: Exception) -> None:
            # A bug or a full disk must not end the daemon: log it, try at the next tick.
            self.step_errors += 1
            log.error("%s: %s failed", self.identity.terminal_id, step, exc_info=exc)

        # A slow link that makes the agent fall behind skips ticks instead of bursting.
        await run_every(period, step, on_error=failed)

    async def _drain(self) -> None:
        while True:
            try:
                await self._drain_window()
            except OutboxError as exc:
                log.error("%s: outbox failed: %s", self.identity.terminal_id, exc)
                await asyncio.sleep(RETRY_AFTER_ERROR_S)
            except Exception:
                # Whatever it is, reports must keep flowing once it passes.
                self.step_errors += 1
                log.exception("%s: draining the outbox failed", self.identity.terminal_id)
                await asyncio.sleep(RETRY_AFTER_ERROR_S)

    async def _drain_window(self) -> None:
        """Publish the oldest entries and wait for every PUBACK before taking more.

        Each entry is handed to the uplink once per process: if the connection drops
        meanwhile, paho re-sends the unacknowledged ones first after the reconnect, in
        order, so nothing is published twice by us and nothing overtakes. Only a restart
        publishes an unacknowledged entry again (the centre drops the duplicate by seq).
        """
        await self.uplink.wait_connected()
        self._outbox_changed.clear()
        entries = self.outbox.peek(DRAIN_WINDOW)
        if not entries:
            await self._outbox_changed.wait()
            return
        futures = [self.uplink.publish(e.channel, e.payload) for e in entries]
        for entry, fut in zip(entries, futures, strict=True):
            try:
                await fut
            except UplinkError as exc:
                # The broker refused this message (ACL, size): resending cannot help and
                # keeping it would block every report behind it. Count it and go on.
                self.refused += 1
                log.error(
                    "%s: broker refused outbox entry %d: %s",
                    self.identity.terminal_id,
                    entry.id,
                    exc,
                )
            self.outbox.remove(entry.id)

    async def _stopper(self) -> None:
        await self._stop.wait()
        raise _Stopped


class _Stopped(Exception):
    """Raised inside the task group to end :meth:`Agent.run` cleanly."""
