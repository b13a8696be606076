"""``posfleet report``: the same figures from the shell, as CSV and as a table."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest

from posfleet.central.cli import main
from posfleet.store import create_engine
from posfleet.store.migrate import upgrade
from tests.component.report_rows import FROM, TO, seed_reports


async def _seed(url: str) -> None:
    engine = create_engine(url)
    try:
        await seed_reports(engine)
    finally:
        await engine.dispose()


def test_report_prints_csv_and_a_table_and_refuses_a_bad_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    var = tmp_path / "var"
    var.mkdir()
    url = f"sqlite+aiosqlite:///{(var / 'posfleet.db').resolve()}"
    upgrade(url)
    asyncio.run(_seed(url))
    monkeypatch.setenv("POSFLEET_VAR_DIR", str(var))

    assert main(["report", "response-times", "--from", FROM, "--to", TO, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert (rows[0]["group"], rows[0]["mtta_s"], rows[0]["mttr_s"]) == ("all", "975.0", "4500.0")

    assert main(["report", "repeated-faults", "--from", FROM, "--to", TO]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:4] == ["terminal_id", "component", "incidents", "rules"]
    assert table[2].split()[:4] == ["T-1", "printer", "3", "2"]

    assert main(["report", "weekly-trend", "--from", TO, "--to", FROM]) == 2
    assert "to must be after from" in capsys.readouterr().err
