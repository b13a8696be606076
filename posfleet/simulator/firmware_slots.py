"""The A/B firmware slots of a simulated terminal: transfer, verify, activate, confirm, roll back.

Sans time: the terminal model decides when a reboot happens and calls in here. Which
images boot, which are refused and which fail after boot: see
:mod:`posfleet.simulator.firmware_images`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from posfleet.agent.drivers.base import FirmwareSlot, FirmwareSlots, FirmwareTransfer
from posfleet.agent.drivers.maintenance_actions import FirmwareImageInfo
from posfleet.agent.drivers.maintenance_codes import ResultCode
from posfleet.simulator.errors import TerminalRefusal
from posfleet.simulator.firmware_images import (
    BOOT_LOOP_MARKER,
    CRASH_MARKER,
    REJECT_MARKER,
    read_header,
    reader_error_rate_of,
)

__all__ = ["BLOCK_SIZE", "BOOT_LOOP_MARKER", "SLOT_CAPACITY", "FirmwareSlotsModel"]

BLOCK_SIZE = 4096
SLOT_CAPACITY = 64 << 20


@dataclass
class _Transfer:
    info: FirmwareImageInfo
    data: bytearray = field(default_factory=bytearray)
    verified: bool = False


def _other(slot: FirmwareSlot) -> FirmwareSlot:
    return FirmwareSlot.B if slot is FirmwareSlot.A else FirmwareSlot.A


class FirmwareSlotsModel:
    """Two slots, one active; a new image goes into the other one."""

    def __init__(
        self,
        version: str,
        *,
        block_size: int = BLOCK_SIZE,
        model: str = "",
        reader_error_rates: Mapping[str, float] | None = None,
    ) -> None:
        self.model = model
        self.active = FirmwareSlot.A
        self.versions = {FirmwareSlot.A: version, FirmwareSlot.B: ""}
        self.block_size = block_size
        self.pending_confirm = False
        self.last_rollback = ""
        self.updates = 0
        self.boot_loops = {FirmwareSlot.A: False, FirmwareSlot.B: False}
        self.crashes = {FirmwareSlot.A: False, FirmwareSlot.B: False}
        """Slots whose image boots but whose payment application then crashes."""
        self.reader_errors: dict[FirmwareSlot, float | None] = {
            FirmwareSlot.A: None,
            FirmwareSlot.B: None,
        }
        """The card-read error rate each slot's image forces (None: the reader's own)."""
        self.reader_error_rates = dict(reader_error_rates or {})
        """By firmware version: the error rate the reader has while that version runs."""
        self.refused_images = 0
        self._transfer: _Transfer | None = None

    @property
    def inactive(self) -> FirmwareSlot:
        """The slot an update writes to."""
        return _other(self.active)

    @property
    def transfer_received(self) -> int:
        """Bytes of the image transfer in progress received so far (0: none under way)."""
        return 0 if self._transfer is None else len(self._transfer.data)

    @property
    def active_version(self) -> str:
        """The version the terminal runs."""
        return self.versions[self.active]

    @property
    def forced_reader_error_rate(self) -> float | None:
        """The card-read error rate the running firmware causes, None if it adds nothing.

        The image's own marker wins; else the rate configured for the running version.
        """
        marked = self.reader_errors[self.active]
        return marked if marked is not None else self.reader_error_rates.get(self.active_version)

    def status(self) -> FirmwareSlots:
        """What FIRMWARE STATUS reports."""
        return FirmwareSlots(
            self.active, dict(self.versions), self.pending_confirm, self.last_rollback
        )

    def begin(self, info: FirmwareImageInfo) -> FirmwareTransfer:
        """Start a transfer, or resume the one in progress if it is the same image."""
        if self.pending_confirm:
            raise TerminalRefusal(ResultCode.WRONG_STATE, "confirm or roll back the last update")
        if info.size > SLOT_CAPACITY:
            raise TerminalRefusal(ResultCode.MEMORY_FULL)
        current = self._transfer
        if current is not None and (current.info.sha256, current.info.size) == (
            info.sha256,
            info.size,
        ):
            return FirmwareTransfer(self.inactive, self.block_size, len(current.data))
        self._transfer = _Transfer(info)
        # Writing overwrites whatever the inactive slot held.
        self.versions[self.inactive] = ""
        return FirmwareTransfer(self.inactive, self.block_size, 0)

    def write(self, offset: int, data: bytes) -> int:
        """Append one block; returns the next offset expected."""
        transfer = self._transfer
        if transfer is None:
            raise TerminalRefusal(ResultCode.WRONG_STATE, "no firmware transfer in progress")
        if offset != len(transfer.data):
            raise TerminalRefusal(ResultCode.BLOCK_OUT_OF_ORDER)
        if len(data) > self.block_size or offset + len(data) > transfer.info.size:
            raise TerminalRefusal(ResultCode.MALFORMED_REQUEST, "block too large")
        transfer.data += data
        transfer.verified = False
        return len(transfer.data)

    def verify(self) -> None:
        """Check the whole image against the announced SHA-256."""
        transfer = self._transfer
        if transfer is None:
            raise TerminalRefusal(ResultCode.WRONG_STATE, "no firmware transfer in progress")
        if len(transfer.data) != transfer.info.size:
            raise TerminalRefusal(ResultCode.IMAGE_MISMATCH, "image incomplete")
        if hashlib.sha256(transfer.data).digest() != transfer.info.sha256:
            # A corrupt image is never kept: the next BEGIN starts from scratch.
            self._transfer = None
            self.refused_images += 1
            raise TerminalRefusal(ResultCode.IMAGE_MISMATCH)
        problem = self._vendor_check(transfer)
        if problem:
            self._transfer = None
            self.refused_images += 1
            raise TerminalRefusal(ResultCode.IMAGE_MISMATCH, problem)
        transfer.verified = True

    def _vendor_check(self, transfer: _Transfer) -> str:
        """What the terminal's own image check finds wrong ("" if nothing)."""
        if REJECT_MARKER in transfer.data:
            return "vendor signature check failed"
        header = read_header(transfer.data)
        if header is None:
            return ""
        if header.version != transfer.info.version:
            return f"image is {header.version}, announced as {transfer.info.version}"
        if self.model and self.model not in header.models:
            return f"image is not built for model {self.model}"
        return ""

    def activate(self, *, force_boot_loop: bool = False) -> FirmwareSlot:
        """Switch to the verified image; it runs on trial. Returns the new active slot."""
        transfer = self._transfer
        if transfer is None or not transfer.verified:
            raise TerminalRefusal(ResultCode.WRONG_STATE, "no verified image to activate")
        target = self.inactive
        self.versions[target] = transfer.info.version
        self.boot_loops[target] = force_boot_loop or BOOT_LOOP_MARKER in transfer.data
        self.crashes[target] = CRASH_MARKER in transfer.data
        self.reader_errors[target] = reader_error_rate_of(transfer.data)
        self._transfer = None
        self.active = target
        self.pending_confirm = True
        return target

    def confirm(self) -> None:
        """Keep the trial slot for good."""
        if not self.pending_confirm:
            raise TerminalRefusal(ResultCode.WRONG_STATE, "no update awaits confirmation")
        self.pending_confirm = False
        self.updates += 1

    def rollback(self, reason: str) -> None:
        """Make the other slot active again (on request, or on the terminal's own)."""
        previous = _other(self.active)
        if not self.versions[previous]:
            raise TerminalRefusal(ResultCode.WRONG_STATE, "the other slot holds no firmware")
        self.active = previous
        self.pending_confirm = False
        self.last_rollback = reason
