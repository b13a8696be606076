"""The command dispatcher: one result per command, whatever the command or the terminal does."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from posfleet.agent.commands import CATALOG, CommandDispatcher
from posfleet.agent.drivers.base import (
    CollectedLogs,
    DiagnosticResult,
    DiagnosticTest,
)
from posfleet.agent.drivers.errors import TerminalRefusedError
from posfleet.agent.outbox import Outbox
from posfleet.agent.serial.errors import ReplyTimeoutError
from posfleet.agent.uplink import IncomingCommand
from posfleet.contract import Channel, CommandResult

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class FakeDriver:
    """Just enough of a remote-action driver; records what it was asked to do."""

    def __init__(self) -> None:
        self.printed: list[str] = []
        self.fail_with: Exception | None = None
        self.log_text = ""

    async def print_line(self, text: str) -> None:
        if self.fail_with:
            raise self.fail_with
        self.printed.append(text)

    async def run_diagnostic(self, test: DiagnosticTest) -> DiagnosticResult:
        return DiagnosticResult(test, test is not DiagnosticTest.CARD_READER, "reader worn")

    async def collect_logs(
        self, start: datetime, end: datetime, *, max_bytes: int = 4 << 20
    ) -> CollectedLogs:
        return CollectedLogs(self.log_text, start, end)


class Harness:
    def __init__(self, tmp_path: Path, driver: Any) -> None:
        self.outbox = Outbox(tmp_path / "outbox.db")
        self.driver = driver
        self.dispatcher = CommandDispatcher(driver, self.outbox, asyncio.Lock(), clock=lambda: NOW)
        self.acked = 0

    def _ack(self) -> None:
        self.acked += 1

    async def send(self, payload: bytes | dict[str, Any]) -> None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        await self.dispatcher.handle(IncomingCommand(raw, self._ack))

    def results(self) -> list[CommandResult]:
        return [
            CommandResult.model_validate_json(e.payload)
            for e in self.outbox.peek(100)
            if e.channel is Channel.CMD_RESULT
        ]


def command(name: str, args: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"id-{name}",
        "name": name,
        "args": args or {},
        "issued_by": "bob",
        "issued_at": NOW.isoformat(),
        "expires_at": (NOW + timedelta(minutes=1)).isoformat(),
    }
    body.update(fields)
    return body


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path, FakeDriver())


def test_the_whitelist_is_the_one_in_the_issue() -> None:
    assert set(CATALOG) == {
        "print_test",
        "card_reader_test",
        "host_ping",
        "self_test",
        "print_line",
        "collect_logs",
        "sync_clock",
        "reboot",
        "backup_config",
        "restore_config",
        "read_counters",
        "read_health",
        "firmware_cancel",
    }


async def test_ok_command_runs_once_and_a_repeat_gets_the_stored_result(harness: Harness) -> None:
    await harness.send(command("print_line", {"text": "hello"}))
    await harness.send(command("print_line", {"text": "hello"}))
    first, second = harness.results()
    assert first.status == "ok" and first == second
    assert harness.driver.printed == ["hello"]
    assert harness.acked == 2
    assert harness.dispatcher.repeated == 1


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (command("self_destruct"), "rejected", "unknown command 'self_destruct'"),
        (command("print_line", {"txt": "x"}), "rejected", "invalid arguments"),
        (command("print_line", {"text": "x" * 65}), "rejected", "invalid arguments"),
        (command("reboot", {"now": True}), "rejected", "invalid arguments"),
        (command("reboot"), "rejected", "not supported by this terminal's driver"),
        (
            command(
                "print_line", {"text": "x"}, expires_at=(NOW - timedelta(seconds=1)).isoformat()
            ),
            "expired",
            "expired at",
        ),
        (command("card_reader_test"), "failed", "card reader failed: reader worn"),
        (
            command("collect_logs", {"from": NOW.isoformat(), "to": NOW.isoformat()}),
            "rejected",
            "'to' must be after 'from'",
        ),
    ],
)
async def test_every_bad_command_gets_a_result_saying_why(
    harness: Harness, body: dict[str, Any], status: str, reason: str
) -> None:
    await harness.send(body)
    (result,) = harness.results()
    assert (result.id, result.status) == (body["id"], status)
    assert result.error is not None and reason in result.error
    assert harness.driver.printed == []


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (TerminalRefusedError("PRINT LINE", 0xCC, "printer not ready"), "printer not ready"),
        (ReplyTimeoutError(10.0), "the terminal did not answer"),
        (RuntimeError("bug"), "agent error: RuntimeError: bug"),
    ],
)
async def test_driver_failures_become_failed_results(
    harness: Harness, error: Exception, reason: str
) -> None:
    harness.driver.fail_with = error
    await harness.send(command("print_line", {"text": "x"}))
    (result,) = harness.results()
    assert result.status == "failed" and result.error is not None and reason in result.error


async def test_malformed_payloads_are_answered_when_they_carry_an_id(harness: Harness) -> None:
    await harness.send(b"not json")
    await harness.send(b'["a list"]')
    await harness.send({"id": "x/y", "name": "reboot"})
    assert harness.results() == []
    assert harness.dispatcher.malformed == 3

    await harness.send({"id": "half-1", "name": "reboot"})
    (result,) = harness.results()
    assert result.id == "half-1" and result.status == "rejected"
    assert result.error is not None and "malformed command" in result.error
    assert harness.acked == 4


async def test_a_command_cut_short_by_a_restart_is_answered_failed_not_rerun(
    tmp_path: Path,
) -> None:
    first = Harness(tmp_path, FakeDriver())
    first.outbox.claim_command("id-print_line")  # the agent died while it ran
    first.outbox.close()

    second = Harness(tmp_path, FakeDriver())
    second.dispatcher.answer_interrupted()
    await second.send(command("print_line", {"text": "x"}))
    results = second.results()
    assert [r.status for r in results] == ["failed", "failed"]
    assert results[0].error is not None and "restarted" in results[0].error
    assert second.driver.printed == []


async def test_collected_logs_are_scrubbed_and_cut_to_fit_a_message(harness: Harness) -> None:
    line = "2026-03-01T11:00:00Z approved 4111111111111111 12.50\n"
    harness.driver.log_text = line * 2000
    window = {"from": (NOW - timedelta(hours=2)).isoformat(), "to": NOW.isoformat()}
    await harness.send(command("collect_logs", window))
    (result,) = harness.results()
    assert result.status == "ok"
    text = result.output["text"]
    assert "4111111111111111" not in text and "411111******1111" in text
    assert result.output["truncated"] is True
    assert text.endswith("\n") and text.startswith("2026-03-01T11:00:00Z")
    assert len(json.dumps(result.output)) < 64 * 1024
