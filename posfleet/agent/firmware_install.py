"""Installing a verified image on the terminal: transfer, activation, health window, recovery.

- :class:`SerialLockedDriver` takes the agent's serial-link lock for each call, so health
  and fault polls go on between the blocks of a long transfer;
- :func:`transfer_image` writes the image (memory-mapped, never read whole into memory)
  into the inactive slot through the driver's block transfer;
- :class:`HealthWatch` decides, after activation, whether the new slot may be confirmed:
  the terminal must come back within ``boot_timeout_s`` running the new version on the
  trial slot, then stay there for ``window_s`` without a critical fault;
- :func:`reconcile` is the pure decision made whenever the updater picks up an install it
  may have been cut off from (a restart, a power loss): what the terminal's slots say
  against what the updater wrote down.
"""

from __future__ import annotations

import asyncio
import mmap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from posfleet.agent.drivers.base import (
    CollectedLogs,
    ConfigBackup,
    ConfigRestoreResult,
    DetectedFault,
    DiagnosticResult,
    DiagnosticTest,
    FirmwareSlot,
    FirmwareSlots,
    FirmwareTransfer,
    HealthData,
    SupportsRemoteActions,
    TerminalCounters,
    TerminalIdentity,
)
from posfleet.agent.drivers.errors import TerminalRefusedError
from posfleet.agent.drivers.firmware_transfer import Progress, write_firmware_image
from posfleet.agent.drivers.maintenance_codes import ResultCode
from posfleet.agent.firmware_standby import slot_text
from posfleet.agent.firmware_state import ActionRecord
from posfleet.agent.serial.errors import SerialLinkError
from posfleet.contract import Component, Severity

if TYPE_CHECKING:
    from posfleet.contract import HealthMetrics

BUSY_CODES = frozenset({ResultCode.BUSY, ResultCode.BATCH_UNSETTLED})
"""The terminal's "not now": a sale in progress, or a batch not yet settled."""


def is_busy(exc: TerminalRefusedError) -> bool:
    """True if the terminal refused because the merchant is trading (retry later)."""
    return exc.result_code in BUSY_CODES


def is_critical(fault: DetectedFault) -> bool:
    """A fault that fails the health window: critical, or an error of firmware or system."""
    if fault.severity is Severity.CRITICAL:
        return True
    return fault.severity is Severity.ERROR and fault.component in (
        Component.FIRMWARE,
        Component.SYSTEM,
    )


class SerialLockedDriver:
    """A :class:`SupportsRemoteActions` that holds ``lock`` for each call of ``driver``."""

    def __init__(self, driver: SupportsRemoteActions, lock: asyncio.Lock) -> None:
        self.driver = driver
        self.lock = lock

    async def identify(self) -> TerminalIdentity:
        """See :meth:`SupportsRemoteActions.identify`."""
        async with self.lock:
            return await self.driver.identify()

    async def read_health_data(self) -> HealthData:
        """See :meth:`SupportsRemoteActions.read_health_data`."""
        async with self.lock:
            return await self.driver.read_health_data()

    async def read_health(self) -> HealthMetrics:
        """See :meth:`SupportsRemoteActions.read_health`."""
        async with self.lock:
            return await self.driver.read_health()

    async def read_faults(self) -> list[DetectedFault]:
        """See :meth:`SupportsRemoteActions.read_faults`."""
        async with self.lock:
            return await self.driver.read_faults()

    async def print_line(self, text: str) -> None:
        """See :meth:`SupportsRemoteActions.print_line`."""
        async with self.lock:
            await self.driver.print_line(text)

    async def sync_clock(self, now: datetime) -> float:
        """See :meth:`SupportsRemoteActions.sync_clock`."""
        async with self.lock:
            return await self.driver.sync_clock(now)

    async def reboot(self) -> None:
        """See :meth:`SupportsRemoteActions.reboot`."""
        async with self.lock:
            await self.driver.reboot()

    async def run_diagnostic(self, test: DiagnosticTest) -> DiagnosticResult:
        """See :meth:`SupportsRemoteActions.run_diagnostic`."""
        async with self.lock:
            return await self.driver.run_diagnostic(test)

    async def read_counters(self) -> TerminalCounters:
        """See :meth:`SupportsRemoteActions.read_counters`."""
        async with self.lock:
            return await self.driver.read_counters()

    async def collect_logs(
        self, start: datetime, end: datetime, *, max_bytes: int = 4 << 20
    ) -> CollectedLogs:
        """See :meth:`SupportsRemoteActions.collect_logs`."""
        async with self.lock:
            return await self.driver.collect_logs(start, end, max_bytes=max_bytes)

    async def backup_config(self) -> ConfigBackup:
        """See :meth:`SupportsRemoteActions.backup_config`."""
        async with self.lock:
            return await self.driver.backup_config()

    async def restore_config(self, params: dict[str, str]) -> ConfigRestoreResult:
        """See :meth:`SupportsRemoteActions.restore_config`."""
        async with self.lock:
            return await self.driver.restore_config(params)

    async def firmware_status(self) -> FirmwareSlots:
        """See :meth:`SupportsRemoteActions.firmware_status`."""
        async with self.lock:
            return await self.driver.firmware_status()

    async def firmware_begin(self, size: int, sha256: bytes, version: str) -> FirmwareTransfer:
        """See :meth:`SupportsRemoteActions.firmware_begin`."""
        async with self.lock:
            return await self.driver.firmware_begin(size, sha256, version)

    async def firmware_write_block(self, offset: int, data: bytes) -> None:
        """See :meth:`SupportsRemoteActions.firmware_write_block`."""
        async with self.lock:
            await self.driver.firmware_write_block(offset, data)

    async def firmware_verify(self) -> None:
        """See :meth:`SupportsRemoteActions.firmware_verify`."""
        async with self.lock:
            await self.driver.firmware_verify()

    async def firmware_activate(self) -> None:
        """See :meth:`SupportsRemoteActions.firmware_activate`."""
        async with self.lock:
            await self.driver.firmware_activate()

    async def firmware_confirm(self) -> None:
        """See :meth:`SupportsRemoteActions.firmware_confirm`."""
        async with self.lock:
            await self.driver.firmware_confirm()

    async def firmware_rollback(self) -> None:
        """See :meth:`SupportsRemoteActions.firmware_rollback`."""
        async with self.lock:
            await self.driver.firmware_rollback()


async def transfer_image(
    driver: SupportsRemoteActions, image: Path, version: str, progress: Progress
) -> FirmwareSlot:
    """Write ``image`` into the inactive slot and have the terminal verify it.

    The file is memory-mapped: a 32 MB image costs the agent page cache, not heap. A
    transfer the terminal still holds part of resumes where the terminal says.
    """
    with image.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        return await write_firmware_image(driver, mapped, version, progress=progress)


class Next(StrEnum):
    """What to do with an install picked up again."""

    INSTALL = "install"
    """Nothing was activated: (re)write the image and activate it."""
    WATCH = "watch"
    """The new slot runs on trial: (re)start the health window."""
    SUCCEEDED = "succeeded"
    """The new slot is already confirmed."""
    ROLLED_BACK = "rolled_back"
    """The terminal is back on the previous slot after an activation."""
    ROLL_BACK = "roll_back"
    """A trial slot the updater cannot vouch for: go back to the good slot."""


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The decision of :func:`reconcile`, and the reason for a detail."""

    next: Next
    reason: str = ""


def reconcile(record: ActionRecord, slots: FirmwareSlots, version: str) -> Reconciliation:
    """Decide how an install goes on, from the record and the terminal's slots now."""
    activated = record.target_slot is not None and record.activated_at is not None
    on_target = record.target_slot is not None and slots.active is record.target_slot
    if on_target and slots.versions.get(slots.active) == version:
        if slots.pending_confirm:
            if activated:
                return Reconciliation(Next.WATCH)
            return Reconciliation(
                Next.WATCH, f"{slot_text(slots)} was activated just before a restart"
            )
        return Reconciliation(Next.SUCCEEDED, f"{slot_text(slots)} is already confirmed")
    if slots.pending_confirm:
        # On trial with something this action did not put there: the updater cannot
        # vouch for it, and a slot nobody confirms is not the good one.
        return Reconciliation(
            Next.ROLL_BACK, f"{slot_text(slots)} runs on trial and no health window vouches for it"
        )
    if activated:
        if record.rollback_reason:
            return Reconciliation(Next.ROLLED_BACK, record.rollback_reason)
        if slots.last_rollback and slots.last_rollback != record.rollback_before:
            return Reconciliation(
                Next.ROLLED_BACK, f"the terminal rolled back on its own: {slots.last_rollback}"
            )
    return Reconciliation(Next.INSTALL)


@dataclass(frozen=True, slots=True)
class HealthVerdict:
    """The outcome of a health window."""

    healthy: bool
    reason: str = ""
    rolled_back_by_terminal: bool = False


class HealthWatch:
    """Watches a freshly activated slot; feed it the terminal's faults with :meth:`observe`."""

    def __init__(
        self,
        driver: SupportsRemoteActions,
        *,
        target: FirmwareSlot,
        version: str,
        window_s: float,
        boot_timeout_s: float,
        poll_s: float,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.driver = driver
        self.target = target
        self.version = version
        self.window_s = window_s
        self.boot_timeout_s = boot_timeout_s
        self.poll_s = poll_s
        self._clock = clock
        self._sleep = sleep
        self._watching = False
        self._critical: list[DetectedFault] = []

    def observe(self, fault: DetectedFault) -> None:
        """A fault the terminal reported; a critical one during the window fails it."""
        if self._watching and is_critical(fault):
            self._critical.append(fault)

    async def run(self, on_back: Callable[[FirmwareSlots], None]) -> HealthVerdict:
        """Wait for the terminal to come back, then watch it; ``on_back`` once it is back."""
        self._watching = True
        try:
            back = await self._until_back()
            if isinstance(back, HealthVerdict):
                return back
            on_back(back)
            return await self._window()
        finally:
            self._watching = False

    async def _probe(self) -> tuple[FirmwareSlots, TerminalIdentity] | str:
        try:
            slots = await self.driver.firmware_status()
            identity = await self.driver.identify()
        except SerialLinkError as exc:
            return f"the terminal does not answer: {exc}"
        return slots, identity

    def _judge(self, slots: FirmwareSlots) -> HealthVerdict | None:
        if slots.active is not self.target:
            why = slots.last_rollback or f"it went back to {slot_text(slots)}"
            return HealthVerdict(False, f"the terminal rolled back on its own: {why}", True)
        if self._critical:
            fault = self._critical[0]
            return HealthVerdict(False, f"critical fault {fault.code}: {fault.detail}")
        return None

    async def _until_back(self) -> FirmwareSlots | HealthVerdict:
        deadline = self._clock() + timedelta(seconds=self.boot_timeout_s)
        last = "no answer yet"
        while True:
            probe = await self._probe()
            if isinstance(probe, str):
                last = probe
            else:
                slots, identity = probe
                verdict = self._judge(slots)
                if verdict is not None:
                    return verdict
                if identity.firmware_version == self.version:
                    return slots
                last = f"it reports firmware {identity.firmware_version}"
            if self._clock() >= deadline:
                return HealthVerdict(
                    False,
                    f"the terminal did not come back with {self.version} within "
                    f"{self.boot_timeout_s:g} s ({last})",
                )
            await self._sleep(self.poll_s)

    async def _window(self) -> HealthVerdict:
        ends = self._clock() + timedelta(seconds=self.window_s)
        answered_at_end = False
        deadline = ends + timedelta(seconds=self.boot_timeout_s)
        last = ""
        while True:
            if self._critical:
                fault = self._critical[0]
                return HealthVerdict(False, f"critical fault {fault.code}: {fault.detail}")
            now = self._clock()
            probe = await self._probe()
            if isinstance(probe, str):
                last = probe
            else:
                verdict = self._judge(probe[0])
                if verdict is not None:
                    return verdict
                if probe[1].firmware_version != self.version:
                    return HealthVerdict(
                        False, f"the terminal reports firmware {probe[1].firmware_version}"
                    )
                answered_at_end = now >= ends
            if answered_at_end:
                return HealthVerdict(True)
            if now >= deadline:
                return HealthVerdict(False, f"the terminal stopped answering ({last})")
            remaining = (ends - self._clock()).total_seconds()
            await self._sleep(max(0.0, min(self.poll_s, remaining)) if remaining > 0 else 0.5)
