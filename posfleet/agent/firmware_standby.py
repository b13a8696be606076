"""The firmware updater on standby: nothing of it is loaded until there is work for it.

The updater (:mod:`posfleet.agent.firmware_updater`) validates offers and keeps its state
with the contract's pydantic models, which cost a terminal megabytes of memory; offers
come a few times a year. :class:`FirmwareStandby` stands in for it in the daemon: at start
it reads only whether the state file holds an action under way (then the updater starts at
once and carries on, as after any restart), otherwise it checks the terminal for a trial
slot nobody vouches for and waits. The first offer, or a ``firmware_cancel`` command,
starts the real updater, which from then on does everything.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from posfleet.agent.drivers.base import (
    DetectedFault,
    FirmwareSlot,
    FirmwareSlots,
    SupportsRemoteActions,
)
from posfleet.agent.drivers.errors import TerminalRefusedError
from posfleet.agent.serial.errors import SerialLinkError
from posfleet.agent.uplink import IncomingCommand
from posfleet.contract import utcnow

if TYPE_CHECKING:
    from posfleet.agent.firmware_cancel import CancelOutcome
    from posfleet.agent.firmware_config import UpdaterConfig
    from posfleet.agent.firmware_state import ActionRecord
    from posfleet.agent.firmware_updater import FirmwareUpdater
    from posfleet.agent.outbox import Outbox

log = logging.getLogger(__name__)

STATE_FILE = "updater.json"
"""The updater's state file in its directory (:mod:`posfleet.agent.firmware_state`)."""

OfferSource = Callable[[], Awaitable[IncomingCommand]]


def slot_text(slots: FirmwareSlots, slot: FirmwareSlot | None = None) -> str:
    """``slot A (2.4.1)`` for a status detail; the active slot unless ``slot`` is given."""
    which = slots.active if slot is None else slot
    return f"slot {which} ({slots.versions.get(which) or 'empty'})"


def action_under_way(directory: Path) -> bool:
    """Whether the updater's state file (if any) holds an action not yet finished.

    Only a peek: a file that cannot be read or parsed counts as "under way", so that the
    updater itself starts and deals with it (it moves a corrupt file aside).
    """
    try:
        raw = (directory / STATE_FILE).read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        state = json.loads(raw)
    except ValueError:
        return True
    return not isinstance(state, dict) or state.get("current") is not None


async def roll_back_orphan_trial(driver: SupportsRemoteActions) -> None:
    """At start, with no action under way: a trial slot nobody vouches for goes back."""
    try:
        slots = await driver.firmware_status()
        if slots.pending_confirm:
            log.warning(
                "terminal runs %s on trial and no firmware action vouches for it: rolling back",
                slot_text(slots),
            )
            await driver.firmware_rollback()
    except (SerialLinkError, TerminalRefusedError) as exc:
        log.warning("cannot check the terminal's firmware slots at start: %s", exc)


class FirmwareStandby:
    """The daemon's firmware updater, started on the first offer (see the module docstring).

    Takes the arguments of :class:`~posfleet.agent.firmware_updater.FirmwareUpdater` and
    builds it with them when it is needed; :attr:`updater` is it from then on.
    """

    def __init__(
        self,
        driver: object,
        outbox: Outbox,
        serial_lock: asyncio.Lock,
        config: UpdaterConfig,
        *,
        on_status: Callable[[], None] = lambda: None,
        on_terminal_changed: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self._driver = driver
        self._outbox = outbox
        self._serial_lock = serial_lock
        self._on_status = on_status
        self._on_terminal_changed = on_terminal_changed
        self._clock = clock
        self._woken = asyncio.Event()
        self.updater: FirmwareUpdater | None = None
        """The real updater, once something asked for it."""

    def wake(self) -> FirmwareUpdater:
        """The real updater, built now if it was not yet."""
        if self.updater is None:
            from posfleet.agent.firmware_updater import FirmwareUpdater

            log.info("starting the firmware updater")
            self.updater = FirmwareUpdater(
                self._driver,
                self._outbox,
                self._serial_lock,
                self.config,
                on_status=self._on_status,
                on_terminal_changed=self._on_terminal_changed,
                clock=self._clock,
            )
            self._woken.set()
        return self.updater

    @property
    def current(self) -> ActionRecord | None:
        """The action under way (None while on standby)."""
        return None if self.updater is None else self.updater.current

    @property
    def malformed(self) -> int:
        """Offers the updater could not answer (no usable action id)."""
        return 0 if self.updater is None else self.updater.malformed

    async def run(self, next_offer: OfferSource) -> None:
        """Wait for work on standby, then run the updater until cancelled."""
        first: IncomingCommand | None = None
        if self.updater is None and not action_under_way(self.config.directory):
            if isinstance(self._driver, SupportsRemoteActions):
                async with self._serial_lock:
                    await roll_back_orphan_trial(self._driver)
            first = await self._first_offer(next_offer)
            orphans_checked = True
        else:
            orphans_checked = False

        async def offers() -> IncomingCommand:
            nonlocal first
            if first is not None:
                taken, first = first, None
                return taken
            return await next_offer()

        await self.wake().run(offers, check_orphans=not orphans_checked)

    async def _first_offer(self, next_offer: OfferSource) -> IncomingCommand | None:
        """The first offer, or None if a command woke the updater first."""
        offer = asyncio.ensure_future(next_offer())
        woken = asyncio.ensure_future(self._woken.wait())
        try:
            await asyncio.wait({offer, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if not offer.done():
                offer.cancel()  # a queue's get: nothing is lost
        return offer.result() if offer.done() and not offer.cancelled() else None

    def observe_fault(self, fault: DetectedFault) -> None:
        """A fault the terminal reported: only an update under way watches them."""
        if self.updater is not None:
            self.updater.observe_fault(fault)

    async def cancel(self, action_id: str, actor: str) -> CancelOutcome:
        """The centre cancelled an Action: the updater decides (and remembers it)."""
        return await self.wake().cancel(action_id, actor)
