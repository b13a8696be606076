"""Simulated terminal hardware behind a serial link, with fault injection and scenarios."""

from posfleet.simulator.errors import ScenarioError, SimulatorError, TerminalRefusal
from posfleet.simulator.faults import FaultName
from posfleet.simulator.responder import MaintenanceResponder
from posfleet.simulator.scenario import Scenario, load_scenario, parse_scenario
from posfleet.simulator.serial_endpoint import (
    EndpointStats,
    LinkFaults,
    TerminalSession,
    responder_for,
    serve_pty,
    serve_tcp,
)
from posfleet.simulator.terminal_model import SimulatedTerminal
from posfleet.simulator.zvt_responder import ZvtResponder

__all__ = [
    "EndpointStats",
    "FaultName",
    "LinkFaults",
    "MaintenanceResponder",
    "Scenario",
    "ScenarioError",
    "SimulatedTerminal",
    "SimulatorError",
    "TerminalRefusal",
    "TerminalSession",
    "ZvtResponder",
    "load_scenario",
    "parse_scenario",
    "responder_for",
    "serve_pty",
    "serve_tcp",
]
