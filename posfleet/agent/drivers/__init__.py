"""Terminal drivers: what the agent asks a terminal, over whatever protocol it speaks."""

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
