"""``posfleet terminal command|commands`` on this installation's SQLite store.

The CLI runs its own event loop, so it runs in a thread while the test plays the
central service: it answers the recorded command through the real result handler.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from posfleet.central.cli import main
from posfleet.contract import CommandResult, CommandStatus, utcnow
from posfleet.diagnostics.command_results_ingest import CommandResultHandler
from posfleet.store import create_engine, upgrade_engine, write_transaction
from posfleet.store.schema import terminal_commands
from tests.component.firmware_rows import add_terminal

CHECKS = [
    {"name": "host", "passed": True, "detail": "answered in 87 ms"},
]


async def _answer_first_command(url: str) -> None:
    engine = create_engine(url)
    try:
        command_id = None
        for _ in range(200):
            async with engine.connect() as conn:
                command_id = await conn.scalar(
                    terminal_commands.select().with_only_columns(terminal_commands.c.id)
                )
            if command_id is not None:
                break
            await asyncio.sleep(0.05)  # the CLI records it on its own loop, in its thread
        assert command_id is not None
        result = CommandResult(
            id=command_id,
            status=CommandStatus.OK,
            output={"test": "host_ping", "passed": True, "latency_ms": 87, "checks": CHECKS},
            ts=utcnow(),
        )
        async with write_transaction(engine) as conn:
            assert await CommandResultHandler()(conn, "T-CLI", result, now=utcnow())
    finally:
        await engine.dispose()


async def test_a_command_from_the_shell_waits_for_the_answer_and_lists_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    var = tmp_path / "var"
    var.mkdir()
    url = f"sqlite+aiosqlite:///{var / 'posfleet.db'}"
    engine = create_engine(url)
    await upgrade_engine(engine)
    await add_terminal(engine, "T-CLI")
    await engine.dispose()
    monkeypatch.setenv("POSFLEET_VAR_DIR", str(var))

    argv = ["terminal", "command", "T-CLI", "host_ping", "--reason", "no connection"]
    ran = asyncio.to_thread(main, [*argv, "--wait", "20"])
    status, _ = await asyncio.gather(ran, _answer_first_command(url))
    out = capsys.readouterr()
    assert status == 0, out.err
    assert "Ping the acquirer host on T-CLI: done" in out.out
    assert "ok    Acquirer host: answered in 87 ms" in out.out
    assert "Round trip (ms): 87" in out.out
    assert "queued" in out.err and "done" in out.err

    assert await asyncio.to_thread(main, ["terminal", "commands", "T-CLI"]) == 0
    assert "host_ping" in capsys.readouterr().out
    refused = await asyncio.to_thread(main, ["terminal", "command", "T-CLI", "reboot"])
    assert refused == 1
    assert "give a reason" in capsys.readouterr().err
