"""Simulated terminal hardware behind a serial link, with fault injection."""

from posfleet.simulator.responder import MaintenanceResponder
from posfleet.simulator.serial_endpoint import (
    EndpointStats,
    LinkFaults,
    TerminalSession,
    serve_pty,
    serve_tcp,
)
from posfleet.simulator.terminal_model import FaultName, SimulatedTerminal

__all__ = [
    "EndpointStats",
    "FaultName",
    "LinkFaults",
    "MaintenanceResponder",
    "SimulatedTerminal",
    "TerminalSession",
    "serve_pty",
    "serve_tcp",
]
