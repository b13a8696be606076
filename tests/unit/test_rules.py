"""Rule files: the built-in pack loads, and every mistake names file, line and reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest

from posfleet.diagnostics.durations import parse_duration
from posfleet.diagnostics.errors import RuleFileError
from posfleet.diagnostics.rule_files import (
    load_builtin_rules,
    load_rule_paths,
    merge_rule_sets,
    parse_rules,
)

GOOD = """\
rules:
  - id: custom.hot
    title: Too hot
    component: temperature
    severity: warning
    when: temperature_c > 50.0
    for: 2m
    cause: It is hot.
    remedy: [Let it cool]
    escalation: remote_fix
"""


def test_the_builtin_pack_loads_and_covers_every_fault_of_the_domain() -> None:
    ids = {rule.id for rule in load_builtin_rules()}
    # One rule (at least) per row of DOMAIN.md's fault table, plus predictive maintenance.
    for expected in (
        "printer.not_ready",
        "card_reader.errors",
        "tamper.detected",
        "battery.low",
        "temperature.high",
        "network.host_unreachable",
        "network.weak_signal",
        "network.tls_failures",
        "storage.full",
        "clock.drift",
        "keys.dukpt_low",
        "declines.host_side",
        "declines.pin_pad",
        "system.reboot_loop",
        "terminal.offline",
        "firmware.mismatch",
        "maintenance.print_head",
        "maintenance.card_reader",
        "maintenance.battery",
    ):
        assert expected in ids


def test_a_good_file_parses_with_its_extras() -> None:
    [rule] = parse_rules(GOOD, "site.yaml")
    assert rule.id == "custom.hot"
    assert rule.hold_for.total_seconds() == 120
    assert rule.inputs == {"temperature_c"}
    assert rule.source == "site.yaml:2"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("rules: [\n  {id: x\n", 3, "not valid YAML"),
        ("", 1, "empty"),
        ("rulez: []\n", 1, "unknown top-level key 'rulez'"),
        (GOOD.replace("when: temperature_c > 50.0", "when: temperature_c >"), 6, "not valid CEL"),
        (GOOD.replace("severity: warning", "severity: urgent"), 5, "severity 'urgent'"),
        (GOOD.replace("for: 2m", "for: soon"), 7, "not a duration"),
        (GOOD.replace("    cause: It is hot.\n", ""), 2, "missing 'cause'"),
        (GOOD.replace("escalation: remote_fix", "escalation: pray"), 10, "escalation 'pray'"),
        (GOOD.replace("    for: 2m\n", "    colour: red\n"), 7, "unknown key 'colour'"),
        (GOOD.replace("id: custom.hot", "id: Custom Hot"), 2, "dotted lower-case"),
        (GOOD + GOOD[len("rules:\n") :], 11, "already defined on line 2"),
        (
            GOOD.replace("when: temperature_c > 50.0", "when: increase.reads > 1.0"),
            6,
            "declares no increase 'reads'",
        ),
    ],
)
def test_errors_name_the_line_and_the_reason(text: str, line: int, reason: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        parse_rules(text, "site.yaml")
    assert caught.value.path == "site.yaml"
    assert caught.value.line == line, str(caught.value)
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"site.yaml:{line}: ")


def test_a_later_rule_with_the_same_id_overrides_the_builtin(tmp_path: Path) -> None:
    override = tmp_path / "override.yaml"
    override.write_text(GOOD.replace("custom.hot", "temperature.high"))
    merged = merge_rule_sets([load_builtin_rules(), load_rule_paths([tmp_path])])
    [hot] = [r for r in merged if r.id == "temperature.high"]
    assert hot.title == "Too hot"
    assert len(merged) == len(load_builtin_rules())


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("5m", 300), ("1h", 3600), (30, 30)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_rules_check_exits_non_zero_with_file_line_and_reason(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.yaml"
    bad.write_text(dedent(GOOD).replace("severity: warning", "severity: loud"))
    cli = [sys.executable, "-m", "posfleet.central.cli", "rules", "check"]

    ok = subprocess.run([*cli, str(good)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "ok, 1 rules" in ok.stdout

    failed = subprocess.run(
        [*cli, str(good), str(bad)], capture_output=True, text=True, check=False
    )
    assert failed.returncode == 1
    assert f"{bad}:5: severity 'loud' is not one of" in failed.stderr
