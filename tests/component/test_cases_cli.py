"""``posfleet case ...`` on a real SQLite database in a fresh var dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from posfleet.central.cli import main


def test_open_note_list_show_and_close_a_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POSFLEET_VAR_DIR", str(tmp_path / "var"))
    assert main(["db", "upgrade"]) == 0
    opened = [
        "case", "open", "--merchant", "M-9", "--terminal", "T-9", "--category", "printer",
        "--complaint", "the printer prints blank receipts",
    ]  # fmt: skip
    assert main(opened) == 0
    assert "opened case #1" in capsys.readouterr().out
    assert main(["case", "note", "1", "asked for a new paper roll"]) == 0
    assert main(["case", "link", "1", "incident", "77"]) == 1
    assert "no incident '77' to link" in capsys.readouterr().err
    assert main(["case", "list"]) == 0
    assert "M-9" in capsys.readouterr().out
    assert main(["case", "close", "1", "--confirmation", "merchant, by phone"]) == 0
    assert main(["case", "show", "1"]) == 0
    shown = capsys.readouterr().out
    assert "closed" in shown and "asked for a new paper roll" in shown
    assert "merchant's confirmation: merchant, by phone" in shown
