"""What each whitelisted command does on the terminal, and the output it reports.

Handlers are thin: call one driver method, turn its answer into a JSON-ready dict. They
raise :class:`CommandFailed` for an outcome staff must see as a failure (a test that did
not pass, parameters the terminal rejected); link and terminal errors propagate and the
dispatcher turns them into ``failed`` results.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from posfleet.agent.commands.args import CollectLogsArgs, PrintLineArgs, RestoreConfigArgs
from posfleet.agent.commands.errors import CommandFailed
from posfleet.agent.drivers.base import DiagnosticResult, DiagnosticTest, SupportsRemoteActions
from posfleet.agent.log_scrubber import scrub

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
    """Read the logs of the range, mask card numbers, keep the newest lines that fit."""
    logs = await driver.collect_logs(args.start, args.end, max_bytes=LOG_READ_LIMIT)
    scrubbed = scrub(logs.text)
    text, cut = _newest_lines(scrubbed.text, LOG_UPLOAD_LIMIT)
    return {
        "from": args.start.isoformat(),
        "to": args.end.isoformat(),
        "lines": text.count("\n") + (1 if text and not text.endswith("\n") else 0),
        "text": text,
        "truncated": cut or logs.truncated,
        "masked_card_numbers": scrubbed.masked,
    }


def _newest_lines(text: str, limit: int) -> tuple[str, bool]:
    """The longest tail of whole lines that fits in ``limit`` UTF-8 bytes."""
    data = text.encode()
    if len(data) <= limit:
        return text, False
    tail = data[-limit:]
    newline = tail.find(b"\n")
    tail = tail[newline + 1 :] if newline >= 0 else b""
    return tail.decode(errors="ignore"), True


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
