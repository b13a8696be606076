"""Terminal drivers: what the agent asks a terminal, over whatever protocol it speaks."""

from posfleet.agent.drivers.base import (
    DetectedFault,
    DiagnosticResult,
    DiagnosticTest,
    SupportsRemoteActions,
    TerminalDriver,
    TerminalIdentity,
)
from posfleet.agent.drivers.errors import DriverError, MalformedReplyError, TerminalRefusedError
from posfleet.agent.drivers.maintenance import MaintenanceDriver

__all__ = [
    "DetectedFault",
    "DiagnosticResult",
    "DiagnosticTest",
    "DriverError",
    "MaintenanceDriver",
    "MalformedReplyError",
    "SupportsRemoteActions",
    "TerminalDriver",
    "TerminalIdentity",
    "TerminalRefusedError",
]
