"""The rollout planner: exclusions, wave sizes, seeded and site-spread waves, joiners, pace."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from posfleet.contract import FirmwareManifest, MaintenanceWindow
from posfleet.firmware.rollout_model import (
    Candidate,
    Exclusion,
    Plan,
    RolloutPolicy,
    TargetFilter,
    WaveSpec,
    WaveState,
)
from posfleet.firmware.rollout_planner import (
    action_deadline,
    assign_joiner,
    exclusion_for,
    next_offer_times,
    offer_budget,
    plan,
    preview,
    summarize,
    wave_sizes,
)

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # a Tuesday: 13:00 Berlin, 20:00 Shanghai
MANIFEST = FirmwareManifest(
    name="pos-os",
    version="5.3.0",
    sha256="a" * 64,
    size=1024,
    models=["V400m", "P630"],
    min_version="5.0.0",
)
POLICY = RolloutPolicy()


def _candidate(tid: str, site: str | None = "S-1", **changes: Any) -> Candidate:
    values: dict[str, Any] = {
        "terminal_id": tid,
        "model": "V400m",
        "merchant_id": "M-1",
        "site_id": site,
        "tags": (),
        "firmware_version": "5.2.0",
        "timezone": "Europe/Berlin",
        "online": True,
        "last_seen": T0,
        "has_open_action": False,
    }
    values.update(changes)
    return Candidate(**values)


def _fleet(site_sizes: list[int], prefix: str = "") -> list[Candidate]:
    """Shops of the given sizes; terminal ids ``T-<shop>-<n>``."""
    return [
        _candidate(f"T-{prefix}{s}-{n}", f"S-{prefix}{s}")
        for s, size in enumerate(site_sizes)
        for n in range(size)
    ]


def _whole_sites(result: Plan, fleet: list[Candidate]) -> list[tuple[int, str]]:
    """(wave, shop) pairs where one wave holds every terminal of a shop of two or more."""
    sites = {c.terminal_id: c.site_id for c in fleet}
    size = Counter(sites.values())
    whole = []
    for w, ids in enumerate(result.waves):
        for site, n in Counter(sites[t] for t in ids).items():
            if n == size[site] and n >= 2:
                whole.append((w, str(site)))
    return whole


# ------------------------------------------------------------------------ exclusions


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"model": "A920"}, Exclusion.WRONG_MODEL),
        ({"firmware_version": "4.9.9"}, Exclusion.BELOW_MIN_VERSION),
        ({"firmware_version": "5.3.0"}, Exclusion.ALREADY_CURRENT),
        ({"firmware_version": "5.3"}, Exclusion.ALREADY_CURRENT),
        ({"firmware_version": "5.4.0"}, Exclusion.DOWNGRADE),
        ({"model": None}, Exclusion.NO_INVENTORY),
        ({"firmware_version": "beta"}, Exclusion.UNKNOWN_VERSION),
        ({"has_open_action": True}, Exclusion.BUSY),
        (
            {"online": False, "last_seen": T0 - timedelta(days=7, seconds=1)},
            Exclusion.OFFLINE_TOO_LONG,
        ),
        ({"online": False, "last_seen": None}, Exclusion.OFFLINE_TOO_LONG),
        ({"online": False, "last_seen": T0 - timedelta(days=6)}, None),
        ({"online": True, "last_seen": None}, None),
    ],
)
def test_why_a_matching_terminal_is_left_out(
    changes: dict[str, Any], reason: Exclusion | None
) -> None:
    terminal = _candidate("T-1", **changes)
    assert exclusion_for(terminal, MANIFEST, POLICY, now=T0) == reason
    result = plan([terminal], MANIFEST, POLICY, now=T0, seed="r")
    if reason is None:
        assert result.total == 1 and result.excluded == ()
    else:
        assert result.total == 0 and result.excluded == (("T-1", reason.value),)


def test_a_downgrade_goes_out_only_when_the_manifest_allows_it_and_it_is_confirmed() -> None:
    rollback_image = MANIFEST.model_copy(update={"version": "5.1.0", "allow_downgrade": True})
    newer = _candidate("T-1", firmware_version="5.3.0")
    assert exclusion_for(newer, rollback_image, POLICY, now=T0) is Exclusion.DOWNGRADE
    assert exclusion_for(newer, rollback_image, POLICY, now=T0, downgrade_confirmed=True) is None


def test_the_permanent_reason_is_named_before_busy_or_offline() -> None:
    terminal = _candidate("T-1", model="A920", has_open_action=True, online=False, last_seen=None)
    assert exclusion_for(terminal, MANIFEST, POLICY, now=T0) is Exclusion.WRONG_MODEL


def test_terminals_outside_the_target_are_neither_planned_nor_excluded() -> None:
    fleet = [
        _candidate("T-1", tags=("pilot",)),
        _candidate("T-2"),
        _candidate("T-3", tags=("pilot",), model="A920"),
    ]
    result = plan(fleet, MANIFEST, POLICY, now=T0, seed="r", target=TargetFilter(tags=("pilot",)))
    assert [t for w in result.waves for t in w] == ["T-1"]
    assert result.excluded == (("T-3", "wrong_model"),)


def test_a_terminal_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="T-1 is a candidate twice"):
        plan([_candidate("T-1"), _candidate("T-1")], MANIFEST, POLICY, now=T0, seed="r")


# ----------------------------------------------------------------------- wave sizes


@pytest.mark.parametrize(
    ("eligible", "sizes"),
    [
        (1000, [10, 90, 400, 500]),
        (50, [1, 4, 20, 25]),
        (150, [2, 13, 60, 75]),
        (7, [1, 1, 2, 3]),
        (3, [1, 1, 1, 0]),
        (1, [1, 0, 0, 0]),
        (0, [0, 0, 0, 0]),
    ],
)
def test_default_waves_are_cumulative_percentages_of_the_eligible_fleet(
    eligible: int, sizes: list[int]
) -> None:
    assert wave_sizes(eligible, POLICY.waves) == sizes


def test_count_waves_add_terminals_and_the_last_takes_the_rest() -> None:
    specs = (WaveSpec(count=5), WaveSpec(count=20), WaveSpec(percent=50), WaveSpec(percent=100))
    assert wave_sizes(200, specs) == [5, 20, 75, 100]
    assert wave_sizes(12, specs) == [5, 5, 1, 1]  # later waves keep one terminal each
    assert wave_sizes(3, specs) == [1, 1, 1, 0]
    ten_percent = (WaveSpec(percent=10), WaveSpec(percent=50), WaveSpec(percent=100))
    assert wave_sizes(50, ten_percent) == [5, 20, 25]


def test_the_plan_follows_the_sizes_and_covers_every_eligible_terminal_once() -> None:
    fleet = _fleet([3] * 40 + [1] * 30)  # 150 terminals
    result = plan(fleet, MANIFEST, POLICY, now=T0, seed="rollout-7")
    assert [len(w) for w in result.waves] == [2, 13, 60, 75]
    planned = [t for w in result.waves for t in w]
    assert sorted(planned) == sorted(c.terminal_id for c in fleet)


# ------------------------------------------------------------------ determinism, spread


def test_the_same_seed_gives_the_same_plan_whatever_the_order() -> None:
    fleet = _fleet([4, 2, 1, 7, 3] * 10)
    shuffled = fleet[:]
    random.Random(3).shuffle(shuffled)
    first = plan(fleet, MANIFEST, POLICY, now=T0, seed="rollout-7")
    assert plan(shuffled, MANIFEST, POLICY, now=T0, seed="rollout-7") == first
    other = plan(fleet, MANIFEST, POLICY, now=T0, seed="rollout-8")
    assert other != first and [len(w) for w in other.waves] == [len(w) for w in first.waves]


@pytest.mark.parametrize("seed", [f"rollout-{n}" for n in range(25)])
def test_no_wave_holds_a_whole_shop(seed: str) -> None:
    rng = random.Random(seed)
    fleet = _fleet([rng.choice([1, 1, 2, 2, 3, 4, 6, 10]) for _ in range(120)])
    result = plan(fleet, MANIFEST, POLICY, now=T0, seed=seed)
    assert _whole_sites(result, fleet) == []


def test_the_canary_comes_from_different_shops() -> None:
    fleet = _fleet([10] * 30)  # 300 terminals: canary 3, then 27
    result = plan(fleet, MANIFEST, POLICY, now=T0, seed="r")
    sites = {c.terminal_id: c.site_id for c in fleet}
    for wave in result.waves[:2]:
        assert len({sites[t] for t in wave}) == len(wave)
    assert _whole_sites(result, fleet) == []


def test_a_fleet_of_two_till_shops_splits_every_shop_in_half() -> None:
    fleet = _fleet([2] * 50)
    result = plan(fleet, MANIFEST, POLICY, now=T0, seed="r")
    assert _whole_sites(result, fleet) == []


def test_when_a_whole_shop_cannot_be_avoided_the_plan_still_stands() -> None:
    # A single 100 % wave holds every shop whole; a canary of one and the rest, in a
    # fleet of two-till shops, can split one shop only. The plans are made all the same.
    single = RolloutPolicy(waves=(WaveSpec(percent=100),))
    fleet = _fleet([2])
    assert plan(fleet, MANIFEST, single, now=T0, seed="r").total == 2
    two_waves = RolloutPolicy(waves=(WaveSpec(count=1), WaveSpec(percent=100)))
    pairs = _fleet([2] * 5)
    result = plan(pairs, MANIFEST, two_waves, now=T0, seed="r")
    assert [len(w) for w in result.waves] == [1, 9]
    assert len(_whole_sites(result, pairs)) == 4


def test_terminals_without_a_site_are_each_their_own_shop() -> None:
    fleet = [_candidate(f"T-{n}", None) for n in range(10)]
    result = plan(fleet, MANIFEST, POLICY, now=T0, seed="r")
    assert result.total == 10 and [len(w) for w in result.waves] == [1, 1, 3, 5]


# --------------------------------------------------------------------------- joiners


def test_a_terminal_that_starts_matching_joins_the_open_wave_or_the_next() -> None:
    fleet = _fleet([3] * 20)
    result = plan(fleet, MANIFEST, POLICY, now=T0, seed="r")
    later = T0 + timedelta(hours=30)
    newcomer = _candidate("T-new", "S-0", last_seen=later)  # came online with the old version
    assert exclusion_for(newcomer, MANIFEST, POLICY, now=later) is None
    assert assign_joiner(result, newcomer, 1) == 1
    assert assign_joiner(result, newcomer, 1, current_wave_open=False) == 2
    assert WaveState.RUNNING.accepts_joiners and not WaveState.SOAKING.accepts_joiners
    wave_open = WaveState.SOAKING.accepts_joiners
    assert assign_joiner(result, newcomer, 1, current_wave_open=wave_open) == 2
    assert assign_joiner(result, newcomer, 3, current_wave_open=False) == 3  # never past the last
    planned = fleet[0]
    assert assign_joiner(result, planned, 3) == result.wave_of(planned.terminal_id)
    with pytest.raises(ValueError, match="wave 4 is not one of the plan's 4 waves"):
        assign_joiner(result, newcomer, 4)


def test_a_joiner_with_the_new_version_already_is_not_offered_anything() -> None:
    upgraded = _candidate("T-new", firmware_version="5.3.0")
    assert exclusion_for(upgraded, MANIFEST, POLICY, now=T0) is Exclusion.ALREADY_CURRENT


# --------------------------------------------------------------------------- preview


def test_the_preview_paces_offers_and_waits_for_each_terminals_own_window() -> None:
    berlin = [_candidate(f"T-B{n}", f"S-B{n}") for n in range(50)]
    shanghai = [_candidate(f"T-S{n}", f"S-S{n}", timezone="Asia/Shanghai") for n in range(50)]
    fleet = berlin + shanghai
    result = plan(fleet, MANIFEST, POLICY, now=T0, seed="r")
    rows = preview(result, fleet, POLICY, now=T0)
    assert [r.terminal_id for r in rows] == [t for w in result.waves for t in w]
    wave0 = [r for r in rows if r.wave == 0]
    assert [r.earliest_offer for r in wave0] == [T0]  # 1 % of 100 is one canary
    wave2 = [r for r in rows if r.wave == 2]
    gaps = {b.earliest_offer - a.earliest_offer for a, b in itertools.pairwise(wave2)}
    assert gaps == {timedelta(seconds=1)}  # 60 offers a minute
    by_id = {c.terminal_id: c for c in fleet}
    for row in rows:
        assert row.earliest_install is not None and row.earliest_install >= row.earliest_offer
        local = row.earliest_install.astimezone(ZoneInfo(by_id[row.terminal_id].timezone))
        assert local.hour >= 22 or local.hour < 6


def test_the_next_wave_starts_no_sooner_than_the_last_install_plus_the_soak() -> None:
    fleet = [_candidate(f"T-{n}", f"S-{n}") for n in range(10)]
    result = plan(fleet, MANIFEST, POLICY, now=T0, seed="r")
    rows = preview(result, fleet, POLICY, now=T0)
    estimates = summarize(rows, len(result.waves))
    assert [e.terminals for e in estimates] == [1, 1, 3, 5]
    tonight = datetime(2026, 3, 10, 21, 0, tzinfo=UTC)  # 22:00 in Berlin (CET)
    assert estimates[0].last_install == tonight
    assert estimates[1].first_offer == tonight + timedelta(minutes=30)
    assert estimates[1].last_install == tonight + timedelta(minutes=30)  # window still open
    assert estimates[2].first_offer == tonight + timedelta(minutes=60, seconds=1)
    assert estimates[3].sites == 5


def test_an_unknown_zone_is_estimated_as_utc() -> None:
    odd = _candidate("T-1", timezone="Mars/Olympus")
    result = plan([odd], MANIFEST, POLICY, now=T0, seed="r")
    (row,) = preview(result, [odd], POLICY, now=T0)
    assert row.earliest_install == datetime(2026, 3, 10, 22, 0, tzinfo=UTC)


# ----------------------------------------------------------------- rate limit, deadline


def test_offers_keep_to_the_rate_limit_with_jitter() -> None:
    policy = RolloutPolicy(offers_per_minute=30, jitter_s=10)
    times = next_offer_times(90, policy, now=T0, rng=random.Random(1))
    assert times == sorted(times) and len(times) == 90
    assert min(times) >= T0 and max(times) <= T0 + timedelta(seconds=89 * 2 + 10)
    assert max(times) >= T0 + timedelta(seconds=89 * 2)  # 90 offers at 30/min take 3 minutes
    for minute in range(3):
        start = T0 + timedelta(minutes=minute, seconds=10)
        in_minute = [t for t in times if start <= t < start + timedelta(minutes=1)]
        assert len(in_minute) <= 30 + 5  # jitter may shift at most 10 s worth of slots
    assert times == next_offer_times(90, policy, now=T0, rng=random.Random(1))
    assert times != next_offer_times(90, policy, now=T0, rng=random.Random(2))


def test_without_jitter_offers_are_evenly_spaced() -> None:
    policy = RolloutPolicy(offers_per_minute=120, jitter_s=0)
    times = next_offer_times(4, policy, now=T0, rng=random.Random(1))
    assert times == [T0 + timedelta(seconds=0.5 * k) for k in range(4)]
    assert next_offer_times(0, policy, now=T0, rng=random.Random(1)) == []


def test_the_offer_budget_counts_the_last_minute() -> None:
    policy = replace(POLICY, offers_per_minute=5)
    sent = [T0 - timedelta(seconds=s) for s in (1, 10, 59, 61, 3600)]
    assert offer_budget(sent, policy, now=T0) == 2
    assert offer_budget([], policy, now=T0) == 5
    assert offer_budget(sent * 3, policy, now=T0) == 0


def test_every_action_has_a_deadline() -> None:
    assert action_deadline(POLICY, offered_at=T0) == T0 + timedelta(days=3)
    short = replace(POLICY, action_deadline=timedelta(hours=2))
    assert action_deadline(short, offered_at=T0) == T0 + timedelta(hours=2)


def test_a_window_on_weekdays_only_waits_for_monday() -> None:
    weekdays = replace(
        POLICY, window=MaintenanceWindow(start="01:00", end="04:00", weekdays=[0, 1, 2, 3, 4])
    )
    saturday = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
    terminal = _candidate("T-1")
    result = plan([terminal], MANIFEST, weekdays, now=saturday, seed="r")
    (row,) = preview(result, [terminal], weekdays, now=saturday)
    assert row.earliest_install == datetime(2026, 3, 16, 0, 0, tzinfo=UTC)  # Mon 01:00 CET


def test_the_preview_counts_terminals_whose_window_opens_after_their_deadline() -> None:
    sundays = replace(
        POLICY,
        window=MaintenanceWindow(start="01:00", end="04:00", weekdays=[6]),
        action_deadline=timedelta(days=2),
    )
    fleet = [_candidate(f"T-{n}", f"S-{n}") for n in range(4)]
    result = plan(fleet, MANIFEST, sundays, now=T0, seed="r")  # a Tuesday
    rows = preview(result, fleet, sundays, now=T0)
    estimates = summarize(rows, len(result.waves), deadline=sundays.action_deadline)
    assert estimates[0].late == 1  # offered Tuesday, the window opens Sunday: too late
    assert summarize(rows, len(result.waves))[0].late == 0  # not counted without a deadline
