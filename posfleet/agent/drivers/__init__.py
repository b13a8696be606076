"""Terminal drivers: what the agent asks a terminal, over whatever protocol it speaks.

The names are imported on first use (PEP 562 ``__getattr__``): an agent loads only the
driver its settings name, not both.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from posfleet.agent.drivers.base import (
        CollectedLogs,
        ConfigBackup,
        ConfigRestoreResult,
        DetectedFault,
        DiagnosticCheck,
        DiagnosticResult,
        DiagnosticTest,
        FirmwareSlot,
        FirmwareSlots,
        FirmwareTransfer,
        SupportsRemoteActions,
        TerminalCounters,
        TerminalDriver,
        TerminalIdentity,
    )
    from posfleet.agent.drivers.errors import DriverError, MalformedReplyError, TerminalRefusedError
    from posfleet.agent.drivers.firmware_transfer import write_firmware_image
    from posfleet.agent.drivers.maintenance import MaintenanceDriver
    from posfleet.agent.drivers.maintenance_codes import ResultCode as MaintenanceResultCode
    from posfleet.agent.drivers.zvt import ZvtDriver

_LAZY: dict[str, tuple[str, str]] = {
    **{
        name: ("base", name)
        for name in (
            "CollectedLogs",
            "ConfigBackup",
            "ConfigRestoreResult",
            "DetectedFault",
            "DiagnosticCheck",
            "DiagnosticResult",
            "DiagnosticTest",
            "FirmwareSlot",
            "FirmwareSlots",
            "FirmwareTransfer",
            "SupportsRemoteActions",
            "TerminalCounters",
            "TerminalDriver",
            "TerminalIdentity",
        )
    },
    **{
        name: ("errors", name)
        for name in ("DriverError", "MalformedReplyError", "TerminalRefusedError")
    },
    "write_firmware_image": ("firmware_transfer", "write_firmware_image"),
    "MaintenanceDriver": ("maintenance", "MaintenanceDriver"),
    "MaintenanceResultCode": ("maintenance_codes", "ResultCode"),
    "ZvtDriver": ("zvt", "ZvtDriver"),
}
"""Each public name: the module of this package that defines it, and its name there."""


def __getattr__(name: str) -> object:
    """Import the module that defines ``name`` on first use."""
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where[0]}"), where[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "CollectedLogs",
    "ConfigBackup",
    "ConfigRestoreResult",
    "DetectedFault",
    "DiagnosticCheck",
    "DiagnosticResult",
    "DiagnosticTest",
    "DriverError",
    "FirmwareSlot",
    "FirmwareSlots",
    "FirmwareTransfer",
    "MaintenanceDriver",
    "MaintenanceResultCode",
    "MalformedReplyError",
    "SupportsRemoteActions",
    "TerminalCounters",
    "TerminalDriver",
    "TerminalIdentity",
    "TerminalRefusedError",
    "ZvtDriver",
    "write_firmware_image",
]
