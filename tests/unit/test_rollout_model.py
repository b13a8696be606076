"""Rollout vocabulary: default waves, policy validation an operator can read, JSON round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from posfleet.contract import MaintenanceWindow
from posfleet.firmware.rollout_model import (
    Candidate,
    ErrorAction,
    Exclusion,
    GateTolerances,
    GateVerdict,
    HealthFigures,
    Plan,
    ReasonCode,
    RolloutPolicy,
    RolloutPolicyError,
    RolloutState,
    TargetFilter,
    WaveProgress,
    WaveSpec,
    WaveState,
)

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _candidate(**changes: Any) -> Candidate:
    values: dict[str, Any] = {
        "terminal_id": "T-1",
        "model": "V400m",
        "merchant_id": "M-1",
        "site_id": "S-1",
        "tags": ("pilot",),
        "firmware_version": "5.2.0",
        "timezone": "Europe/Berlin",
        "online": True,
        "last_seen": T0,
        "has_open_action": False,
    }
    values.update(changes)
    return Candidate(**values)


def test_names_are_stored_by_their_values() -> None:
    assert [s.value for s in RolloutState] == [
        "draft",
        "previewed",
        "awaiting_approval",
        "running",
        "paused",
        "finished",
        "aborted",
        "rolled_back",
    ]
    assert [s.value for s in WaveState] == ["pending", "running", "soaking", "passed", "failed"]
    assert [r.value for r in ReasonCode] == [
        "security_fix",
        "bug_fix",
        "feature",
        "rollback",
        "other",
    ]
    for word in (
        "wrong_model",
        "below_min_version",
        "already_current",
        "downgrade",
        "offline_too_long",
        "busy",
    ):
        assert Exclusion(word).value == word
    assert RolloutState.FINISHED.final and not RolloutState.PAUSED.final
    assert RolloutState.PAUSED.active and not RolloutState.DRAFT.active


def test_default_policy_is_a_one_percent_canary_then_10_50_100() -> None:
    policy = RolloutPolicy()
    assert [w.percent for w in policy.waves] == [1.0, 10.0, 50.0, 100.0]
    assert all(w.success_threshold == 0.95 and w.error_threshold == 0.10 for w in policy.waves)
    assert all(w.soak == timedelta(minutes=30) for w in policy.waves)
    assert policy.offers_per_minute == 60 and policy.offer_interval == timedelta(seconds=1)
    assert policy.action_deadline == timedelta(days=3)
    assert policy.window == MaintenanceWindow(start="22:00", end="06:00")
    assert not policy.require_second_approver


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (WaveSpec, "either a percent of the fleet or a count"),
        (lambda: WaveSpec(percent=10, count=5), "not both"),
        (lambda: WaveSpec(percent=0), "must be above 0 and at most 100"),
        (lambda: WaveSpec(percent=120), "must be above 0 and at most 100"),
        (lambda: WaveSpec(count=0), "at least 1"),
        (lambda: WaveSpec(percent=5, success_threshold=95), "0.95 is 95 %"),
        (lambda: WaveSpec(percent=5, soak=timedelta(minutes=-1)), "cannot be negative"),
        (lambda: RolloutPolicy(waves=()), "at least one wave"),
        (
            lambda: RolloutPolicy(
                waves=(WaveSpec(percent=10), WaveSpec(percent=5), WaveSpec(percent=100))
            ),
            "wave 2 is 5 %, not more than the 10 % before it",
        ),
        (lambda: RolloutPolicy(waves=(WaveSpec(percent=50),)), "must be 100 %"),
        (lambda: RolloutPolicy(waves=(WaveSpec(count=5),)), "the last wave is 5 terminals"),
        (lambda: RolloutPolicy(offers_per_minute=0), "from 1 to 10000"),
        (lambda: RolloutPolicy(action_deadline=timedelta(seconds=1)), "5 seconds to 30 days"),
        (lambda: RolloutPolicy(jitter_s=-3), "jitter_s"),
        (lambda: RolloutPolicy(window=MaintenanceWindow(weekdays=[])), "opens on no weekday"),
        (lambda: GateTolerances(decline_rate_points=-1), "between 0 and 100"),
    ],
)
def test_policies_that_cannot_work_are_refused_with_a_sentence(build: Any, words: str) -> None:
    with pytest.raises(RolloutPolicyError, match=words) as info:
        build()
    assert isinstance(info.value, ValueError)


def test_count_waves_then_the_rest() -> None:
    policy = RolloutPolicy(waves=(WaveSpec(count=5), WaveSpec(percent=30), WaveSpec(percent=100)))
    assert [w.describe() for w in policy.waves] == ["5 terminals", "30 %", "100 %"]


def test_policy_survives_its_json_column() -> None:
    policy = RolloutPolicy(
        waves=(
            WaveSpec(count=2, soak=timedelta(minutes=5), on_error=ErrorAction.ABORT),
            WaveSpec(percent=100, success_threshold=0.9, error_threshold=0.2),
        ),
        offers_per_minute=120,
        jitter_s=5,
        window=MaintenanceWindow(start="01:00", end="04:30", weekdays=[0, 1, 2, 3]),
        action_deadline=timedelta(hours=12),
        max_offline=timedelta(days=2),
        require_second_approver=True,
        gate=GateTolerances(reader_error_rate_points=1.5, min_terminals=3),
    )
    data = policy.to_json()
    assert data["action_deadline_s"] == 43200 and data["waves"][0]["on_error"] == "abort"
    assert RolloutPolicy.from_json(data) == policy
    assert RolloutPolicy.from_json(None) == RolloutPolicy()
    assert RolloutPolicy.from_json({"offers_per_minute": 10}).offers_per_minute == 10


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"speed": 3}, "unknown policy field"),
        ({"waves": "1,10,100"}, "waves must be a list"),
        ({"waves": [{"percent": 100, "size": 1}]}, "unknown wave field"),
        ({"window": {"start": "25:00"}}, "not a maintenance window"),
        ({"gate": {"noise": 1}}, "unknown gate field"),
        ({"action_deadline_s": "3 days"}, "number of seconds"),
    ],
)
def test_bad_policy_json_says_which_field(data: dict[str, Any], words: str) -> None:
    with pytest.raises(RolloutPolicyError, match=words):
        RolloutPolicy.from_json(data)


def test_target_filter_every_criterion_must_hold_any_value_within_one() -> None:
    pilots_in_berlin = TargetFilter(models=("V400m", "P630"), tags=("pilot", "berlin"))
    assert pilots_in_berlin.matches(_candidate())
    assert pilots_in_berlin.matches(_candidate(model="P630", tags=("berlin", "x")))
    assert not pilots_in_berlin.matches(_candidate(model="A920"))
    assert not pilots_in_berlin.matches(_candidate(tags=()))
    assert not pilots_in_berlin.matches(_candidate(model=None))
    assert TargetFilter(merchant_ids=("M-1",)).matches(_candidate())
    assert not TargetFilter(merchant_ids=("M-2",)).matches(_candidate())
    assert not TargetFilter(site_ids=("S-2",)).matches(_candidate())
    assert not TargetFilter(site_ids=("S-1",)).matches(_candidate(site_id=None))


def test_target_filter_versions_compare_by_precedence() -> None:
    old_ones = TargetFilter(firmware_versions=("5.2", "5.1.3"))
    assert old_ones.matches(_candidate(firmware_version="5.2.0"))
    assert old_ones.matches(_candidate(firmware_version="5.1.3+build7"))
    assert not old_ones.matches(_candidate(firmware_version="5.2.1"))
    assert not old_ones.matches(_candidate(firmware_version=None))


def test_empty_filter_is_the_whole_fleet_and_round_trips() -> None:
    assert TargetFilter().everything and TargetFilter().describe() == "the whole fleet"
    assert TargetFilter().matches(_candidate(model=None, site_id=None, tags=()))
    target = TargetFilter(models=["P630", "V400m", "P630"], tags="pilot")  # type: ignore[arg-type]
    assert target.models == ("P630", "V400m") and target.tags == ("pilot",)
    assert target.describe() == "models P630, V400m; tags pilot"
    assert TargetFilter.from_json(target.to_json()) == target
    with pytest.raises(RolloutPolicyError, match="unknown target filter field"):
        TargetFilter.from_json({"model": ["V400m"]})
    with pytest.raises(RolloutPolicyError, match="not a name"):
        TargetFilter(site_ids=("",))


def test_health_figures_rates_and_nothing_to_divide_by() -> None:
    figures = HealthFigures(
        terminals=4, reads=1000, read_errors=12, approved=950, declined=50, reboots=2
    )
    assert figures.reader_error_rate == pytest.approx(0.012)
    assert figures.decline_rate == pytest.approx(0.05)
    assert figures.reboots_per_terminal == 0.5
    empty = HealthFigures(0, 0, 0, 0, 0, 0)
    assert (empty.reader_error_rate, empty.decline_rate, empty.reboots_per_terminal) == (0, 0, 0)
    with pytest.raises(RolloutPolicyError, match="more read errors than card reads"):
        HealthFigures(1, 5, 6, 0, 0, 0)
    with pytest.raises(RolloutPolicyError, match="reboots must be a count"):
        HealthFigures(1, 5, 1, 0, 0, -1)


def test_verdict_and_plan_survive_their_json_columns() -> None:
    before, after = HealthFigures(2, 100, 1, 90, 10, 0), HealthFigures(2, 100, 9, 90, 10, 0)
    verdict = GateVerdict(False, ("card-reader errors 1.0 % -> 9.0 %",), before, after)
    assert GateVerdict.from_json(verdict.to_json()) == verdict
    assert verdict.to_json()["after"]["reader_error_rate"] == 0.09
    plan = Plan(waves=(("T-1",), ("T-2", "T-3")), excluded=(("T-4", "busy"),))
    assert Plan.from_json(plan.to_json()) == plan
    assert plan.total == 3 and plan.wave_of("T-3") == 1 and plan.wave_of("T-4") is None
    assert plan.exclusion_counts() == {"busy": 1}


def test_wave_progress_cannot_count_more_than_its_terminals() -> None:
    with pytest.raises(RolloutPolicyError, match="more than its 3 terminals"):
        WaveProgress(wave=0, total=3, succeeded=2, failed=1, in_progress=1, started_at=T0)
    progress = WaveProgress(wave=1, total=5, succeeded=2, failed=1, in_progress=1, started_at=T0)
    assert progress.final == 3 and progress.not_offered == 1


def test_a_window_further_away_than_the_deadline_is_warned_about() -> None:
    assert RolloutPolicy().warnings() == ()
    assert RolloutPolicy().longest_wait() == timedelta(hours=16)  # 06:00 until 22:00
    sundays = RolloutPolicy(window=MaintenanceWindow(start="01:00", end="04:00", weekdays=[6]))
    assert sundays.longest_wait() == timedelta(days=6, hours=21)
    assert sundays.warnings() == (
        "the maintenance window can be 6 days 21 h away, longer than the Action deadline "
        "of 3 days: terminals offered just after their window closed will time out; open "
        "the window on more days or allow a longer deadline",
    )
    weekdays = RolloutPolicy(
        window=MaintenanceWindow(start="01:00", end="04:00", weekdays=[0, 1, 2, 3, 4]),
        action_deadline=timedelta(hours=50),
    )
    assert weekdays.longest_wait() == timedelta(hours=69)  # Friday 04:00 to Monday 01:00
    assert (
        "2 days 21 h away, longer than the Action deadline of 2 days 2 h"
        in (weekdays.warnings()[0])
    )
    always = RolloutPolicy(window=MaintenanceWindow(start="00:00", end="00:00"))
    assert always.longest_wait() == timedelta(0)


def test_a_policy_without_canary_or_soak_is_warned_about() -> None:
    single = RolloutPolicy(waves=(WaveSpec(percent=100),))
    assert single.warnings() == ("a single wave updates every terminal at once, without a canary",)
    no_soak = RolloutPolicy(waves=(WaveSpec(percent=10, soak=timedelta(0)), WaveSpec(percent=100)))
    assert no_soak.warnings() == (
        "no wave soaks before the next: the health gate sees no figures after the update",
    )
