"""The demo's release key, its two signed images, the window and pace of its rollouts, and
the rollouts themselves in a real store: drafts by the admin, previewed, started on cue,
and an earlier run's left-overs aborted."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.central.demo_firmware import (
    IMAGE_SIZE,
    PILOT_VERSION,
    RELEASE_VERSION,
    build_demo_images,
    demo_release_key,
    forget_earlier_updates,
    upload_demo_images,
    window_open_now,
)
from posfleet.central.demo_rollouts import (
    DemoPace,
    abort_leftover_rollouts,
    create_demo_rollouts,
    start_on_cue,
)
from posfleet.central.settings import CentralSettings
from posfleet.contract import (
    HealthMetrics,
    HealthReport,
    Inventory,
    SignedManifest,
    State,
    utcnow,
)
from posfleet.contract.maintenance_window import window_state, zone
from posfleet.firmware.rollout_model import RolloutState
from posfleet.firmware.rollouts import get_rollout, preview_rollout
from posfleet.firmware.settings import FirmwareSettings
from posfleet.firmware.signing import TrustedKeys
from posfleet.simulator.firmware_images import BOOT_LOOP_MARKER, DEFAULT_MODELS, read_header
from posfleet.simulator.fleet_file import FleetTerminal
from posfleet.store import (
    apply_health,
    apply_inventory,
    apply_state,
    upgrade_engine,
    write_transaction,
)
from posfleet.store.engine import create_engine

ADMIN = "user:admin-demo"


def test_the_release_key_is_made_once_for_its_owner_only_and_reused(tmp_path: Path) -> None:
    folder = tmp_path / "firmware"
    made = demo_release_key(folder)
    assert stat.S_IMODE(made.private_path.stat().st_mode) == 0o600
    assert made.public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert made.key_id.startswith("release-")
    made.private_path.chmod(0o644)  # loosened by hand: the next run tightens it again
    again = demo_release_key(folder)
    assert again == made
    assert stat.S_IMODE(again.private_path.stat().st_mode) == 0o600


def test_a_public_key_left_without_its_private_key_is_replaced(tmp_path: Path) -> None:
    first = demo_release_key(tmp_path)
    first.private_path.unlink()
    second = demo_release_key(tmp_path)
    assert second.key_id != first.key_id and second.private_path.exists()


def test_the_images_are_signed_for_the_demo_models_and_only_the_pilot_boot_loops(
    tmp_path: Path,
) -> None:
    key = demo_release_key(tmp_path)
    release, pilot = build_demo_images(tmp_path, key)
    trusted = TrustedKeys.from_pem_files({key.key_id: key.public_path})
    for image, version in ((release, RELEASE_VERSION), (pilot, PILOT_VERSION)):
        manifest = trusted.verify(image.signed)
        assert (manifest.name, manifest.version, manifest.size) == ("pos-os", version, IMAGE_SIZE)
        assert tuple(manifest.models) == DEFAULT_MODELS
        body = image.path.read_bytes()
        assert len(body) == IMAGE_SIZE
        header = read_header(body)
        assert header is not None and header.version == version
        on_disk = SignedManifest.model_validate_json(image.manifest_path.read_bytes())
        assert on_disk == image.signed
    assert BOOT_LOOP_MARKER not in release.path.read_bytes()
    assert BOOT_LOOP_MARKER in pilot.path.read_bytes()


async def test_the_images_are_uploaded_once_and_kept_on_the_next_run(tmp_path: Path) -> None:
    key = demo_release_key(tmp_path / "firmware")
    images = build_demo_images(tmp_path / "firmware", key)
    settings = CentralSettings(
        var_dir=tmp_path / "var",
        firmware=FirmwareSettings(trusted_keys={key.key_id: key.public_path}),
    )
    assert await upload_demo_images(settings, images) == 2
    assert sorted(p.name for p in settings.artifacts_dir.iterdir()) == sorted(
        i.signed.manifest.sha256 for i in images
    )
    assert await upload_demo_images(settings, images) == 0


async def test_an_image_the_centre_refuses_is_logged_and_the_demo_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = demo_release_key(tmp_path / "firmware")
    images = build_demo_images(tmp_path / "firmware", key)
    settings = CentralSettings(var_dir=tmp_path / "var")  # trusts no release key
    assert await upload_demo_images(settings, images) == 0
    assert "pos-os@5.3.0 was not uploaded" in caplog.text
    assert "no release key is configured" in caplog.text


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC),
        datetime(2026, 3, 10, 22, 59, 59, tzinfo=UTC),  # 23:59 in Vienna: wraps past midnight
        datetime(2026, 3, 29, 0, 30, tzinfo=UTC),  # the night the clocks go forward
    ],
)
def test_the_window_is_open_now_in_the_site_s_zone_and_closes_within_hours(
    now: datetime,
) -> None:
    tz = zone("Europe/Vienna")
    window = window_open_now("Europe/Vienna", now)
    assert window.weekdays == [0, 1, 2, 3, 4, 5, 6]
    state = window_state(window, now, tz)
    assert state.open and state.closes_at is not None
    assert timedelta(hours=1) < state.closes_at - now <= timedelta(hours=3)
    assert not window_state(window, now + timedelta(hours=3), tz).open


def test_an_earlier_run_s_firmware_state_is_forgotten_and_nothing_else(tmp_path: Path) -> None:
    for terminal in ("DEMO-00001", "DEMO-00002"):
        (tmp_path / terminal / "firmware").mkdir(parents=True)
        (tmp_path / terminal / "firmware" / "state.json").write_text("{}")
        (tmp_path / terminal / "outbox").mkdir()
    forget_earlier_updates(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/*")) == [
        "DEMO-00001/outbox",
        "DEMO-00002/outbox",
    ]


def test_the_pace_shrinks_with_the_story_but_a_soak_always_spans_three_health_reports() -> None:
    assert DemoPace(1, 10).soak == timedelta(minutes=1)
    assert DemoPace(10, 3).soak == timedelta(seconds=9)  # not 6 s: the gate needs reports
    assert DemoPace(10, 1).soak == timedelta(seconds=6)
    assert DemoPace(1, 10).deadline == timedelta(minutes=30)
    assert DemoPace(100, 1).deadline == timedelta(minutes=1)
    assert (DemoPace(1, 10).runner_interval_s, DemoPace(10, 3).runner_interval_s) == (5.0, 0.5)
    assert (DemoPace(1, 10).joiner_scan_s, DemoPace(100, 3).joiner_scan_s) == (10.0, 1.0)
    policy = DemoPace(10, 3).policy(DemoPace(10, 3).release_waves(), "Europe/Vienna")
    assert [w.describe() for w in policy.waves] == ["1 terminal", "50 %", "100 %"]
    assert all(w.soak == timedelta(seconds=9) for w in policy.waves)
    assert (policy.offers_per_minute, policy.jitter_s) == (600, 1.0)
    assert window_state(policy.window, utcnow(), zone("Europe/Vienna")).open
    # A canary, and a soak before every gate: the policy warns of neither.
    assert not [w for w in policy.warnings() if "canary" in w or "soak" in w]
    pilot = DemoPace().pilot_waves()
    assert [w.describe() for w in pilot] == ["1 terminal", "100 %"]


def _fleet(count: int) -> list[FleetTerminal]:
    """As ``posfleet demo`` provisions them: vienna-1 is the 4th site, berlin-mitte the 5th."""
    sites = ("hamburg-hafen", "munich-ost", "cologne-dom", "vienna-1", "berlin-mitte")
    zones = {"vienna-1": "Europe/Vienna"}
    return [
        FleetTerminal(
            terminal_id=f"DEMO-{i:05d}",
            password="x",
            site_id=sites[(i - 1) % 5],
            timezone=zones.get(sites[(i - 1) % 5], "Europe/Berlin"),
            seed=i,
        )
        for i in range(1, count + 1)
    ]


@pytest.fixture
async def demo_store(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """The demo's store with both images uploaded, as ``posfleet demo`` makes it."""
    key = demo_release_key(tmp_path / "firmware")
    settings = CentralSettings(
        var_dir=tmp_path / "var",
        firmware=FirmwareSettings(trusted_keys={key.key_id: key.public_path}),
    )
    assert await upload_demo_images(settings, build_demo_images(tmp_path / "firmware", key)) == 2
    engine = create_engine(settings.resolved_database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _report_in(
    engine: AsyncEngine, fleet: list[FleetTerminal], since: datetime, *, first_seq: int = 0
) -> None:
    """Each terminal online on its factory firmware, with health reports since ``since``."""
    now = utcnow()
    async with write_transaction(engine) as conn:
        for t in fleet:
            state = State(online=True, agent_version="1.4.0", boot_id="b1", ts=now)
            await apply_state(conn, t.terminal_id, state, now=now)
            inventory = Inventory(
                model="PF-M100", serial=f"SN-{t.terminal_id}", firmware_version="2.4.1",
                agent_version="1.4.0", site_id=t.site_id, timezone=t.timezone, ts=now,
            )  # fmt: skip
            await apply_inventory(conn, t.terminal_id, inventory, now=now)
            for seq, at in enumerate((since, since + (now - since) / 2, now), start=first_seq):
                report = HealthReport(seq=seq, ts=at, interval_s=10, metrics=HealthMetrics())
                await apply_health(conn, t.terminal_id, report, now=at)


async def test_the_admin_prepares_previews_and_starts_both_rollouts_on_cue(
    demo_store: AsyncEngine,
) -> None:
    fleet = _fleet(20)
    pace = DemoPace(speed=1000, health_interval_s=1)
    release, pilot = await create_demo_rollouts(demo_store, fleet, actor=ADMIN, pace=pace)
    assert (release.version, release.site_id, pilot.version, pilot.site_id) == (
        RELEASE_VERSION, "vienna-1", PILOT_VERSION, "berlin-mitte",
    )  # fmt: skip
    assert release.terminal_ids == ("DEMO-00004", "DEMO-00009", "DEMO-00014", "DEMO-00019")
    async with demo_store.connect() as conn:
        draft = await get_rollout(conn, release.rollout_id)
    assert (draft.state, draft.created_by, draft.reason_code) == (
        RolloutState.DRAFT, ADMIN, "bug_fix",
    )  # fmt: skip
    assert draft.target.site_ids == ("vienna-1",) and draft.artifact == "pos-os@5.3.0"

    began = utcnow() - timedelta(minutes=1)
    await _report_in(demo_store, fleet, began)
    woken: list[bool] = []
    await asyncio.wait_for(
        start_on_cue(demo_store, [release, pilot], actor=ADMIN, pace=pace, since=began,
                     wake=lambda: woken.append(True)),
        timeout=30,
    )  # fmt: skip
    assert woken == [True]
    async with demo_store.connect() as conn:
        started = [await get_rollout(conn, r.rollout_id) for r in (release, pilot)]
        preview = await preview_rollout(conn, release.rollout_id)
    assert [r.state for r in started] == [RolloutState.RUNNING] * 2
    assert [[w.planned for w in r.waves] for r in started] == [[1, 1, 2], [1, 3]]
    commands = [(t.command, t.actor) for t in started[0].transitions]
    assert commands == [("create", ADMIN), ("preview", ADMIN), ("start", ADMIN)]
    assert "vienna-1 has closed for the night" in started[0].transitions[-1].reason_text
    assert len(preview.rows) == 4 and not preview.excluded

    # The next run finds them unfinished: aborted, once.
    assert await abort_leftover_rollouts(demo_store) == 2
    assert await abort_leftover_rollouts(demo_store) == 0
    async with demo_store.connect() as conn:
        ended = await get_rollout(conn, release.rollout_id)
    assert ended.state is RolloutState.ABORTED
    assert ended.transitions[-1].actor == "demo"


async def test_a_rollout_waits_for_a_baseline_of_health_reports_before_it_starts(
    demo_store: AsyncEngine,
) -> None:
    fleet = [t for t in _fleet(20) if t.site_id == "vienna-1"]  # one site: no pilot
    pace = DemoPace(speed=1000, health_interval_s=20)  # a minute's soak
    [release] = await create_demo_rollouts(demo_store, fleet, actor=ADMIN, pace=pace)
    # Reports for hours, but all of them but the last from an earlier run of the demo.
    began = utcnow() - timedelta(minutes=3)
    await _report_in(demo_store, fleet, utcnow() - timedelta(hours=4))
    starting = asyncio.create_task(
        start_on_cue(demo_store, [release], actor=ADMIN, pace=pace, since=began,
                     wake=lambda: None)
    )  # fmt: skip
    done, _ = await asyncio.wait({starting}, timeout=1.5)
    assert not done
    async with demo_store.connect() as conn:
        waiting = await get_rollout(conn, release.rollout_id)
    assert waiting.state is RolloutState.PREVIEWED  # previewed at once, not started
    # This run's reports go back two minutes now (its agents' outbox delivered them late).
    await _report_in(demo_store, fleet, began + timedelta(seconds=1), first_seq=3)
    await asyncio.wait_for(starting, timeout=10)
    async with demo_store.connect() as conn:
        assert (await get_rollout(conn, release.rollout_id)).state is RolloutState.RUNNING


async def test_a_small_fleet_has_no_pilot_and_a_missing_image_no_rollout(
    demo_store: AsyncEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    [release] = await create_demo_rollouts(demo_store, _fleet(1), actor=ADMIN, pace=DemoPace())
    assert (release.version, release.site_id) == (RELEASE_VERSION, "hamburg-hafen")
    empty = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")  # no image stored
    await upgrade_engine(empty)
    try:
        assert await create_demo_rollouts(empty, _fleet(20), actor=ADMIN, pace=DemoPace()) == []
    finally:
        await empty.dispose()
    assert "could not create its rollout of pos-os 5.3.0 vienna-1" in caplog.text
