"""A staff command's record laid out as support reads it.

The agent reports each diagnostic as a verdict plus the items it checked (a host ping's
host and latency, a card-reader test's chip, magstripe and contactless interfaces); the
other commands report figures (counters, health, the clock's offset) or a log text. This
module turns any of them into rows a template draws without knowing the command.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from posfleet.dashboard.templating import _
from posfleet.diagnostics.remote_commands import CommandRecord, CommandState

COMMAND_LABELS: Mapping[str, str] = {
    "print_test": _("Printer test"),
    "card_reader_test": _("Card reader test"),
    "host_ping": _("Ping the acquirer host"),
    "self_test": _("Self test"),
    "collect_logs": _("Collect logs"),
    "sync_clock": _("Set the clock"),
    "read_counters": _("Read counters"),
    "read_health": _("Read health now"),
    "reboot": _("Reboot"),
    "print_line": _("Print a line"),
    "backup_config": _("Back up the configuration"),
    "restore_config": _("Restore a configuration"),
}

STATE_LABELS: Mapping[CommandState, str] = {
    CommandState.QUEUED: _("queued: waiting for the terminal to come online"),
    CommandState.SENT: _("sent: waiting for the terminal's answer"),
    CommandState.DONE: _("done"),
    CommandState.FAILED: _("failed"),
    CommandState.REJECTED: _("rejected by the terminal"),
    CommandState.EXPIRED: _("expired"),
}

STATE_CLASSES: Mapping[CommandState, str] = {
    CommandState.QUEUED: "muted",
    CommandState.SENT: "muted",
    CommandState.DONE: "ok",
    CommandState.FAILED: "bad",
    CommandState.REJECTED: "bad",
    CommandState.EXPIRED: "warn",
}

CHECK_LABELS: Mapping[str, str] = {
    "chip": _("Chip"),
    "magstripe": _("Magnetic stripe"),
    "contactless": _("Contactless"),
    "read_head": _("Read head"),
    "host": _("Acquirer host"),
    "printer": _("Printer"),
    "test_line": _("Test line"),
    "tamper": _("Tamper switch"),
    "storage": _("Storage"),
    "clock": _("Clock"),
    "battery": _("Battery"),
}

FACT_LABELS: Mapping[str, str] = {
    "latency_ms": _("Round trip (ms)"),
    "previous_offset_s": _("Clock was off by (s)"),
    "set_to": _("Clock set to"),
    "lines": _("Log lines"),
    "masked_card_numbers": _("Card numbers masked"),
    "truncated": _("Only the newest lines (cut to fit)"),
    "rebooting": _("Rebooting"),
    "printed": _("Printed"),
}


@dataclass(frozen=True, slots=True)
class CheckRow:
    """One item a diagnostic looked at."""

    label: str
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class CommandView:
    """One command as the terminal page's panel shows it (``state_class``: a badge class)."""

    record: CommandRecord
    label: str
    state_label: str
    state_class: str
    summary: str
    checks: list[CheckRow] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    has_logs: bool = False


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def _flatten(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested figures (health: ``printer.status``) as ``(name, value)`` rows."""
    rows: list[tuple[str, str]] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows.extend(_flatten(value, f"{name}."))
        else:
            rows.append((FACT_LABELS.get(name, name.replace("_", " ")), _value(value)))
    return rows


def _checks(output: Mapping[str, Any]) -> list[CheckRow]:
    rows: list[CheckRow] = []
    for check in output.get("checks") or []:
        if isinstance(check, Mapping) and isinstance(check.get("name"), str):
            name = check["name"]
            rows.append(
                CheckRow(
                    CHECK_LABELS.get(name, name.replace("_", " ")),
                    check.get("passed") is True,
                    str(check.get("detail") or ""),
                )
            )
    return rows


def _facts(record: CommandRecord, output: Mapping[str, Any]) -> list[tuple[str, str]]:
    if record.name == "backup_config":
        params = output.get("params") or {}
        withheld = output.get("withheld") or []
        return [
            (_("Parameters backed up"), str(len(params))),
            (_("Secrets withheld"), _value(list(withheld))),
        ]
    if record.name == "restore_config":
        return [
            (_("Applied"), _value(list(output.get("applied") or []))),
            (_("Rejected"), _value(sorted(output.get("rejected") or {}))),
        ]
    skip = {"checks", "test", "passed", "detail", "text", "from", "to"}
    return _flatten({k: v for k, v in output.items() if k not in skip})


def _summary(record: CommandRecord, output: Mapping[str, Any]) -> str:
    if record.state is CommandState.QUEUED and record.published_at is None:
        return _("The broker was not reached yet; the centre tries again until {time}.").format(
            time=record.expires_at.strftime("%Y-%m-%d %H:%MZ")
        )
    if record.state is CommandState.QUEUED:
        return _("The broker keeps it for the terminal until {time}.").format(
            time=record.expires_at.strftime("%Y-%m-%d %H:%MZ")
        )
    if record.state is CommandState.SENT:
        return _("The terminal has it; its answer appears here.")
    if record.name == "reboot" and record.state is CommandState.FAILED and record.error:
        return _("The terminal refused to reboot: {reason}").format(reason=refusal(record.error))
    detail = output.get("detail")
    text = detail if isinstance(detail, str) and detail else ""
    if record.error and record.state is not CommandState.DONE:
        return f"{text} ({record.error})" if text and text not in record.error else record.error
    return text


def refusal(error: str) -> str:
    """The terminal's own reason out of the agent's error text.

    ``terminal refused reboot: result 0xF2 (busy: a transaction is in progress)`` reads
    as ``busy: a transaction is in progress``.
    """
    head, paren, rest = error.partition("(")
    if paren and rest.endswith(")") and "result 0x" in head:
        return rest[:-1]
    return error


def command_view(record: CommandRecord) -> CommandView:
    """``record`` laid out for reading."""
    output: Mapping[str, Any] = record.output or {}
    return CommandView(
        record=record,
        label=COMMAND_LABELS.get(record.name, record.name),
        state_label=STATE_LABELS[record.state],
        state_class=STATE_CLASSES[record.state],
        summary=_summary(record, output),
        checks=_checks(output),
        facts=_facts(record, output),
        has_logs=record.name == "collect_logs" and isinstance(output.get("text"), str),
    )
