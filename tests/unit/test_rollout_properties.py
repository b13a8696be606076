"""Properties of the rollout planner over generated fleets and policies (hypothesis)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from posfleet.contract import FirmwareManifest
from posfleet.firmware.rollout_model import Candidate, RolloutPolicy, WaveSpec
from posfleet.firmware.rollout_planner import plan, preview, wave_sizes

T0 = datetime(2026, 3, 27, 9, 0, tzinfo=UTC)
MANIFEST = FirmwareManifest(
    name="pos-os", version="5.3.0", sha256="c" * 64, size=1, models=["V400m"], min_version="5.0"
)
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney", "UTC")


@st.composite
def policies(draw: st.DrawFn) -> RolloutPolicy:
    """One to five waves: counts and growing percentages, the last 100 %."""
    cuts = sorted(draw(st.sets(st.integers(1, 99), max_size=4)))
    waves = [WaveSpec(percent=float(p)) for p in cuts]
    if draw(st.booleans()):
        waves.insert(0, WaveSpec(count=draw(st.integers(1, 30))))
    return RolloutPolicy(waves=(*waves, WaveSpec(percent=100)))


@st.composite
def fleets(draw: st.DrawFn) -> list[Candidate]:
    """Shops of 1..8 terminals, a few without a site, versions old, current or too old."""
    sizes = draw(st.lists(st.integers(1, 8), min_size=0, max_size=60))
    fleet = []
    for shop, size in enumerate(sizes):
        zone = draw(st.sampled_from(ZONES))
        for n in range(size):
            fleet.append(
                Candidate(
                    terminal_id=f"T-{shop}-{n}",
                    model="V400m",
                    merchant_id="M",
                    site_id=None if shop % 13 == 12 else f"S-{shop}",
                    tags=(),
                    firmware_version=draw(st.sampled_from(["5.2.0", "5.2.0", "5.3.0", "4.1"])),
                    timezone=zone,
                    online=True,
                    last_seen=T0,
                    has_open_action=False,
                )
            )
    return fleet


@settings(max_examples=150, deadline=None)
@given(fleet=fleets(), policy=policies(), seed=st.text(min_size=1, max_size=8))
def test_every_eligible_terminal_is_planned_once_in_waves_of_the_planned_size(
    fleet: list[Candidate], policy: RolloutPolicy, seed: str
) -> None:
    result = plan(fleet, MANIFEST, policy, now=T0, seed=seed)
    planned = [t for wave in result.waves for t in wave]
    excluded = [t for t, _ in result.excluded]
    assert len(planned) == len(set(planned))
    assert sorted(planned + excluded) == sorted(c.terminal_id for c in fleet)
    sizes = [len(w) for w in result.waves]
    assert sizes == wave_sizes(len(planned), policy.waves)
    # At least one terminal per wave while any are left: empty waves only at the end.
    nonempty = [s > 0 for s in sizes]
    assert nonempty == sorted(nonempty, reverse=True)
    assert all(nonempty) or len(planned) < len(sizes)
    # Each percentage is reached (rounded up) once its wave is done, unless it gives way
    # so that every later wave keeps a terminal.
    done, n = 0, len(planned)
    for index, (spec, size) in enumerate(zip(policy.waves, sizes, strict=True)):
        done += size
        later = len(sizes) - 1 - index
        if spec.percent is not None and n:
            assert done >= min(n - later, spec.percent * n / 100 - 1e-9)


def _shops(sizes: list[int]) -> list[Candidate]:
    return [
        Candidate(
            terminal_id=f"T-{shop}-{n}",
            model="V400m",
            merchant_id="M",
            site_id=f"S-{shop}",
            tags=(),
            firmware_version="5.2.0",
            timezone="Europe/Berlin",
            online=True,
            last_seen=T0,
            has_open_action=False,
        )
        for shop, size in enumerate(sizes)
        for n in range(size)
    ]


@settings(max_examples=100, deadline=None)
@given(fleet=fleets(), seed=st.text(min_size=1, max_size=8))
# Found by this test: the repair of whole shops once took the shops in input order.
@example(fleet=_shops([1, 1, 3, 1, 2, 2, 2, 4, 3, 2, 2, 3]), seed="23")
def test_the_plan_depends_on_the_seed_and_fleet_not_the_order(
    fleet: list[Candidate], seed: str
) -> None:
    policy = RolloutPolicy()
    forward = plan(fleet, MANIFEST, policy, now=T0, seed=seed)
    assert plan(list(reversed(fleet)), MANIFEST, policy, now=T0, seed=seed) == forward


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(2, 6), min_size=12, max_size=60), seed=st.text(max_size=6))
def test_shops_of_several_tills_are_never_updated_all_at_once(sizes: list[int], seed: str) -> None:
    # With the default waves the last one holds half of the fleet: every shop of two or
    # more can keep a till on the old firmware until it comes.
    fleet = [
        Candidate(f"T-{s}-{n}", "V400m", "M", f"S-{s}", (), "5.2.0", "UTC", True, T0, False)
        for s, size in enumerate(sizes)
        for n in range(size)
    ]
    result = plan(fleet, MANIFEST, RolloutPolicy(), now=T0, seed=seed)
    for wave in result.waves:
        in_wave = Counter(t.rsplit("-", 1)[0] for t in wave)
        for shop, count in in_wave.items():
            assert count < sizes[int(shop.split("-")[1])], (shop, wave)


@settings(max_examples=60, deadline=None)
@given(fleet=fleets(), policy=policies())
def test_preview_offers_in_wave_order_and_installs_after_the_offer(
    fleet: list[Candidate], policy: RolloutPolicy
) -> None:
    result = plan(fleet, MANIFEST, policy, now=T0, seed="p")
    rows = preview(result, fleet, policy, now=T0)
    assert [r.terminal_id for r in rows] == [t for wave in result.waves for t in wave]
    offers = [r.earliest_offer for r in rows]
    assert offers == sorted(offers) and all(o >= T0 for o in offers)
    for row in rows:
        assert row.earliest_install is not None
        assert row.earliest_offer <= row.earliest_install < row.earliest_offer + timedelta(days=8)
