"""The whitelist: every command the agent runs, its arguments and its handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from posfleet.agent.commands import handlers
from posfleet.agent.commands.args import (
    CollectLogsArgs,
    NoArgs,
    PrintLineArgs,
    RestoreConfigArgs,
)
from posfleet.agent.drivers.base import DiagnosticTest, SupportsRemoteActions
from posfleet.contract import FIRMWARE_CANCEL, FirmwareCancelArgs

Handler = Callable[[SupportsRemoteActions, Any, datetime], Awaitable[dict[str, Any]]]
"""``(driver, validated args, now) -> output``."""

UpdaterHandler = Callable[[handlers.FirmwareControl, Any, str], Awaitable[dict[str, Any]]]
"""``(firmware updater, validated args, issued_by) -> output``."""


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One whitelisted command."""

    name: str
    args: type[BaseModel]
    driver_method: str
    """The driver method it needs; a driver without it rejects the command."""
    run: Handler


@dataclass(frozen=True, slots=True)
class UpdaterCommandSpec:
    """A whitelisted command the agent's firmware updater answers.

    It needs no serial link (the updater holds the terminal only as its steps need it),
    so it runs without waiting for the link and even while an install is under way.
    """

    name: str
    args: type[BaseModel]
    run: UpdaterHandler


def _diagnostic(test: DiagnosticTest) -> Handler:
    return lambda driver, args, now: handlers.run_diagnostic(driver, test)


_SPECS = [
    CommandSpec("print_test", NoArgs, "run_diagnostic", _diagnostic(DiagnosticTest.PRINTER)),
    CommandSpec(
        "card_reader_test", NoArgs, "run_diagnostic", _diagnostic(DiagnosticTest.CARD_READER)
    ),
    CommandSpec("host_ping", NoArgs, "run_diagnostic", _diagnostic(DiagnosticTest.HOST_PING)),
    CommandSpec("self_test", NoArgs, "run_diagnostic", _diagnostic(DiagnosticTest.SELF_TEST)),
    CommandSpec(
        "print_line", PrintLineArgs, "print_line", lambda d, a, now: handlers.print_line(d, a)
    ),
    CommandSpec(
        "collect_logs",
        CollectLogsArgs,
        "collect_logs",
        lambda d, a, now: handlers.collect_logs(d, a),
    ),
    CommandSpec("sync_clock", NoArgs, "sync_clock", lambda d, a, now: handlers.sync_clock(d, now)),
    CommandSpec("reboot", NoArgs, "reboot", lambda d, a, now: handlers.reboot(d)),
    CommandSpec(
        "backup_config", NoArgs, "backup_config", lambda d, a, now: handlers.backup_config(d)
    ),
    CommandSpec(
        "restore_config",
        RestoreConfigArgs,
        "restore_config",
        lambda d, a, now: handlers.restore_config(d, a),
    ),
    CommandSpec(
        "read_counters", NoArgs, "read_counters", lambda d, a, now: handlers.read_counters(d)
    ),
    CommandSpec("read_health", NoArgs, "read_health", lambda d, a, now: handlers.read_health(d)),
]

_UPDATER_SPECS: list[CommandSpec | UpdaterCommandSpec] = [
    UpdaterCommandSpec(
        FIRMWARE_CANCEL,
        FirmwareCancelArgs,
        handlers.firmware_cancel,
    ),
]

CATALOG: dict[str, CommandSpec | UpdaterCommandSpec] = {
    spec.name: spec for spec in [*_SPECS, *_UPDATER_SPECS]
}
"""Every command the agent accepts, by name."""
