"""What each whitelisted command does on the terminal, and the output it reports.

Handlers are thin: call one driver method, turn its answer into a JSON-ready dict. They
raise :class:`CommandFailed` for an outcome staff must see as a failure (a test that did
not pass, parameters the terminal rejected); link and terminal errors propagate and the
dispatcher turns them into ``failed`` results.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from posfleet.agent.commands.args import CollectLogsArgs, PrintLineArgs, RestoreConfigArgs
from posfleet.agent.commands.errors import CommandFailed
from posfleet.agent.drivers.base import DiagnosticResult, DiagnosticTest, SupportsRemoteActions
from posfleet.agent.log_scrubber import scrub
from posfleet.contract import FirmwareCancelArgs

if TYPE_CHECKING:
    from posfleet.agent.firmware_cancel import CancelOutcome

LOG_UPLOAD_LIMIT = 48 * 1024
"""Bytes of scrubbed log text one result carries; the contract caps payloads at 64 KiB."""

LOG_READ_LIMIT = 4 << 20
"""Bytes asked of the terminal: more than we upload, so the newest part can be chosen."""


def _diagnostic_output(result: DiagnosticResult) -> dict[str, Any]:
    output: dict[str, Any] = {
        "test": result.test.name.lower(),
        "passed": result.passed,
        "detail": result.detail,
        "checks": [dataclasses.asdict(check) for check in result.checks],
    }
    if result.latency_ms is not None:
        output["latency_ms"] = result.latency_ms
    return output


async def run_diagnostic(driver: SupportsRemoteActions, test: DiagnosticTest) -> dict[str, Any]:
    """Run one diagnostic; a test that does not pass is a failed command."""
    result = await driver.run_diagnostic(test)
    output = _diagnostic_output(result)
    if not result.passed:
        raise CommandFailed(
            f"{test.name.lower().replace('_', ' ')} failed: {result.detail}", output
        )
    return output


async def print_line(driver: SupportsRemoteActions, args: PrintLineArgs) -> dict[str, Any]:
    """Print the line."""
    await driver.print_line(args.text)
    return {"printed": args.text}


async def collect_logs(driver: SupportsRemoteActions, args: CollectLogsArgs) -> dict[str, Any]:
    """Read the logs of the range, mask card numbers, upload the newest lines that fit.

    One result carries at most :data:`LOG_UPLOAD_LIMIT` bytes of text *as encoded in
    the JSON payload* (escapes included), so it always fits the contract's payload
    limit. When older lines are left, ``next_skip`` says what to send as ``skip`` in
    the next ``collect_logs`` of the same range to fetch the part before this one.
    """
    logs = await driver.collect_logs(args.start, args.end, max_bytes=LOG_READ_LIMIT)
    scrubbed = scrub(logs.text)
    data = scrubbed.text.encode()
    end = max(0, len(data) - args.skip)
    start = _newest_lines_start(data[:end], LOG_UPLOAD_LIMIT)
    text = data[start:end].decode(errors="ignore")
    older = start > 0
    return {
        "from": args.start.isoformat(),
        "to": args.end.isoformat(),
        "lines": text.count("\n") + (1 if text and not text.endswith("\n") else 0),
        "text": text,
        "truncated": older or logs.truncated,
        "masked_card_numbers": scrubbed.masked,
        "skip": args.skip,
        "next_skip": len(data) - start if older else None,
    }


def _newest_lines_start(data: bytes, limit: int) -> int:
    """Where the longest tail of whole lines of ``data`` starts whose JSON string form
    (escapes included, the quotes not) takes at most ``limit`` bytes."""
    start, used = len(data), 0
    while start > 0:
        newline = data.rfind(b"\n", 0, start - 1)
        line_start = newline + 1  # 0 when no earlier newline: the first line
        line = data[line_start:start].decode(errors="ignore")
        used += len(json.dumps(line, ensure_ascii=False).encode()) - 2
        if used > limit:
            break
        start = line_start
    if start == len(data) and data:
        # One line longer than a part: its newest end, short enough even if every
        # byte needs a six-byte escape, so that the next part moves on.
        start = len(data) - min(len(data), limit // 6)
    return start


async def sync_clock(driver: SupportsRemoteActions, now: datetime) -> dict[str, Any]:
    """Set the terminal's clock to ours."""
    previous = await driver.sync_clock(now)
    return {"previous_offset_s": round(previous, 3), "set_to": now.isoformat()}


async def reboot(driver: SupportsRemoteActions) -> dict[str, Any]:
    """Restart the terminal (it refuses during a sale)."""
    await driver.reboot()
    return {"rebooting": True}


async def backup_config(driver: SupportsRemoteActions) -> dict[str, Any]:
    """Every exportable parameter; secret ones are only named."""
    backup = await driver.backup_config()
    return {"params": dict(backup.params), "withheld": list(backup.withheld)}


async def restore_config(driver: SupportsRemoteActions, args: RestoreConfigArgs) -> dict[str, Any]:
    """Apply a backup; fails only if the terminal took none of it.

    A full backup names read-only parameters too (serial number, hardware revision): the
    replacement terminal rejects those, which is expected, so they are only listed.
    """
    result = await driver.restore_config(dict(args.params))
    output = {"applied": list(result.applied), "rejected": dict(result.rejected)}
    if not result.applied:
        names = ", ".join(sorted(result.rejected))
        raise CommandFailed(f"the terminal applied no parameter; rejected: {names}", output)
    return output


async def read_counters(driver: SupportsRemoteActions) -> dict[str, Any]:
    """Lifetime wear counters."""
    return dataclasses.asdict(await driver.read_counters())


async def read_health(driver: SupportsRemoteActions) -> dict[str, Any]:
    """Every health metric, now."""
    metrics = await driver.read_health()
    output: dict[str, Any] = metrics.model_dump(mode="json", exclude_none=True)
    return output


class FirmwareControl(Protocol):
    """What updater commands need of the agent's firmware updater."""

    async def cancel(self, action_id: str, actor: str) -> CancelOutcome:
        """Stop the Action's update if that is safe; say what was done."""
        ...


async def firmware_cancel(
    updater: FirmwareControl, args: FirmwareCancelArgs, issued_by: str
) -> dict[str, Any]:
    """The centre cancelled an Action: stop its update unless it is writing to the terminal.

    ``ok`` when it was stopped or there was nothing to stop; ``failed`` with the reason
    when the update is installing or rebooting and goes on.
    """
    outcome = await updater.cancel(args.action_id, issued_by)
    if outcome.refused:
        raise CommandFailed(outcome.detail, outcome.output())
    return outcome.output()
