"""``posfleet terminal backups|restore`` on an installation's SQLite database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from posfleet.central.cli import main
from posfleet.contract import utcnow
from posfleet.store.config_backups import BackupSource, NewBackup, insert_backup
from posfleet.store.engine import create_engine
from posfleet.store.migrate import upgrade_engine
from tests.component.firmware_rows import add_terminal


async def _installation(database: Path) -> int:
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        await upgrade_engine(engine)
        await add_terminal(engine, "C-OLD")
        await add_terminal(engine, "C-NEW")
        async with engine.begin() as conn:
            backup_id = await insert_backup(
                conn,
                NewBackup(
                    terminal_id="C-OLD",
                    taken_at=utcnow(),
                    firmware_version="5.2.1",
                    params={"receipt.header": "Bakery Lenz", "display.language": "de"},
                    withheld=["admin.pin"],
                    source=BackupSource.MANUAL,
                    taken_by="user:sam",
                ),
            )
    finally:
        await engine.dispose()
    assert backup_id is not None
    return backup_id


def test_backups_are_listed_and_a_restore_is_previewed_and_refused_without_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    backup_id = asyncio.run(_installation(tmp_path / "posfleet.db"))
    monkeypatch.setenv("POSFLEET_VAR_DIR", str(tmp_path))
    assert main(["terminal", "backups", "C-OLD"]) == 0
    out = capsys.readouterr().out
    assert "5.2.1" in out and "2 parameters" in out and "user:sam" in out

    assert main(["terminal", "restore", str(backup_id), "--onto", "C-NEW", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "set       receipt.header: None -> Bakery Lenz" in out
    assert "withheld  admin.pin" in out

    assert main(["terminal", "restore", str(backup_id), "--onto", "C-NEW"]) == 1
    assert "give a --reason" in capsys.readouterr().err
    assert main(["terminal", "restore", str(backup_id), "--onto", "C-OLD", "--dry-run"]) == 1
    assert "another terminal" in capsys.readouterr().err
