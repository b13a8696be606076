"""Rollouts end to end: the real central service and its rollout runner, the real broker,
real agents on simulated terminals that download, install, reboot into and confirm (or
lose) the new firmware; staff steer it through ``/api/v1/rollouts`` with their own tokens.

One user path per test:

- fifty terminals go 10 % -> 50 % -> 100 % and every one reports the new version, the
  canary spread over the shops, each wave started only after the one before soaked;
- a firmware the terminals boot-loop on: the canary rolls back by itself, its wave fails
  its threshold, the rollout pauses, and nobody else is ever offered it;
- a firmware that installs fine but makes card readers fail: the business-health gate
  pauses the rollout after the canary and opens a fleet incident with the figures;
- a terminal that comes online mid-rollout with the old version joins a later wave;
- two central instances on one PostgreSQL: the rollout completes once, one Action and
  one offer per terminal;
- a start without the second approver, or by support staff, is refused (403) and audited.

Waits are seconds, not minutes (soak, health window, retries), so the six run in well
under three minutes on two cores.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from posfleet.central.cli import main
from tests.harness import PrivateBroker, async_wait_for
from tests.harness.private_postgres import PrivatePostgres
from tests.harness.rollout_rig import RolloutRig, rollout_rig
from tests.harness.sim_fleet import FleetAgentTimings

pytestmark = pytest.mark.e2e

ANY_TIME = {"start": "00:00", "end": "00:00"}
"""A window as long as the day: these tests are not about windows."""
RUNNER = {"rollout_interval_s": 0.5, "rollout_lease_s": 10, "rollout_joiner_scan_s": 1}
"""The runner goes round every half second (not 5 s) and looks for terminals that start
matching every second (not 10 s)."""


def wave(size: float | int, *, soak_s: float = 3.0, **thresholds: Any) -> dict[str, Any]:
    """A wave: a percentage of the fleet so far (float) or a count of terminals (int)."""
    spec: dict[str, Any] = {"percent": size} if isinstance(size, float) else {"count": size}
    return spec | {"soak_s": soak_s} | thresholds


def policy(*waves: dict[str, Any], **more: Any) -> dict[str, Any]:
    """A quick policy: offers as fast as allowed, no jitter, any time of day."""
    base: dict[str, Any] = {
        "waves": list(waves),
        "offers_per_minute": 6000,
        "jitter_s": 0,
        "window": ANY_TIME,
        "action_deadline_s": 300,
    }
    return base | more


def rollout_of(body: Any) -> Any:
    """The rollout object of an API answer (the preview wraps it)."""
    return body.get("rollout", body)


def waves_of(body: Any) -> list[dict[str, Any]]:
    """The waves of a rollout as the API shows them, in order."""
    return sorted(rollout_of(body)["waves"], key=lambda w: w["wave"])


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def wave_of_action(action: dict[str, Any], waves: list[dict[str, Any]]) -> int:
    """The wave that made an Action: the last one started before it was created."""
    created = at(action["created_at"])
    started = [w["wave"] for w in waves if w["started_at"] and at(w["started_at"]) <= created]
    return int(max(started))


async def fleet_reported(rig: RolloutRig, terminal_ids: list[str], *, reports: int) -> None:
    """Wait until each terminal sent ``reports`` more health reports: a baseline for the
    health gate, which compares the updated terminals with their own figures before."""
    first = {tid: t["health_seq"] or 0 for tid, t in (await rig.central.terminals()).items()}

    async def enough() -> bool:
        now = await rig.central.terminals()
        return all((now[t]["health_seq"] or 0) - first.get(t, 0) >= reports for t in terminal_ids)

    await async_wait_for(enough, timeout=reports * 5, interval=0.25, description="baseline")


async def on_version(rig: RolloutRig, terminal_ids: set[str], version: str) -> None:
    """Wait until the registry shows ``version`` for each of the terminals."""

    async def shown() -> bool:
        found = await rig.central.terminals()
        return all(found[t]["firmware_version"] == version for t in terminal_ids)

    await async_wait_for(shown, timeout=30, interval=0.25, description=f"registry on {version}")


async def rounds_later(rig: RolloutRig, rounds: int) -> None:
    """Wait until every instance's rollout runner has gone round ``rounds`` more times."""
    runners = [c.service.rollout_runner for c in rig.centrals]
    wanted = [r.stats.rounds + rounds for r in runners]
    await async_wait_for(
        lambda: all(r.stats.rounds >= w for r, w in zip(runners, wanted, strict=True)),
        timeout=30,
        interval=0.1,
        description=f"{rounds} more runner rounds",
    )


# --------------------------------------------------------------------------- 1. fifty


async def test_fifty_terminals_go_10_50_100_percent_and_all_report_the_new_version(
    broker: PrivateBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with rollout_rig(broker, tmp_path, central_settings=RUNNER) as rig:
        plans = rig.plans(50, sites=10)
        ids = [p.terminal_id for p in plans]
        await rig.fleet.add(plans)
        await rig.registered(ids)
        artifact = await rig.upload("2.5.0")

        rollout_id = await rig.create(
            "2.5.0 to the fleet", artifact, policy(wave(10.0), wave(50.0), wave(100.0))
        )
        preview = await rig.preview(rollout_id)
        assert preview["terminals"] == 50 and preview["excluded_total"] == 0
        assert [w["terminals"] for w in preview["waves"]] == [5, 20, 25]
        # The canary is spread: five terminals from five shops, never a whole shop.
        site_of = {p.terminal_id: p.site_id for p in plans}
        canary = [r["terminal_id"] for r in preview["rows"] if r["wave"] == 0]
        assert len({site_of[t] for t in canary}) == 5

        await fleet_reported(rig, ids, reports=3)
        started = await rig.command(rollout_id, "start")
        assert started.status == 200, started
        # Support staff watch it live with the CLI, which ends by itself when it is over.
        monkeypatch.setenv("POSFLEET_API_TOKEN", rig.staff.tokens["sam"])
        argv = ["rollout", "watch", str(rollout_id), "--interval", "0.5"]
        argv += ["--server", rig.central.service.url]
        watch = asyncio.create_task(asyncio.to_thread(main, argv))
        try:
            done = await rig.until_state(rollout_id, "finished", within_s=120)
        except BaseException:
            await rig.command(rollout_id, "abort", reason_code="other", reason="test failed")
            raise
        finally:
            watched = await watch
        assert watched == 0
        pictures = capsys.readouterr().out
        assert "soaking" in pictures and "50/50 updated" in pictures, pictures[-2000:]

        waves = waves_of(done)
        assert [w["state"] for w in waves] == ["passed", "passed", "passed"], waves
        assert [w["planned"] for w in waves] == [5, 20, 25]
        assert [w["counts"]["succeeded"] for w in waves] == [5, 20, 25]
        for earlier, later in itertools.pairwise(waves):
            # A wave starts only once the one before it soaked (3 s) and passed the gate.
            assert earlier["gate"]["passed"] is True, earlier["gate"]
            assert earlier["soak_until"] == earlier["gate"]["window_end"]
            assert at(later["started_at"]) >= at(earlier["soak_until"])
            assert at(later["started_at"]) >= at(earlier["finished_at"])

        await on_version(rig, set(ids), "2.5.0")
        assert set(rig.fleet.versions().values()) == {"2.5.0"}
        actions = await rig.actions()
        assert sorted(a["terminal_id"] for a in actions) == sorted(ids), "one Action each"
        assert {a["state"] for a in actions} == {"succeeded"}
        assert {a["rollout_id"] for a in actions} == {rollout_id}
        # The canary's Actions came in wave 1, the rest later.
        assert {a["terminal_id"] for a in actions if wave_of_action(a, waves) == 0} == set(canary)
        # Each terminal was offered the image once (one Action, one attempt).
        offers = rig.watch.wire_ids()
        assert all(len(offers[t]) == 1 for t in ids), offers


# ------------------------------------------------------------------------ 2. boot loop


async def test_a_boot_looping_firmware_stops_at_the_canary_which_rolls_back_by_itself(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    async with rollout_rig(broker, tmp_path, central_settings=RUNNER) as rig:
        plans = rig.plans(20, sites=5)
        ids = [p.terminal_id for p in plans]
        await rig.fleet.add(plans)
        await rig.registered(ids)
        artifact = await rig.upload("2.6.0", boot_loop=True)

        rollout_id = await rig.create(
            "2.6.0 canary", artifact, policy(wave(2), wave(50.0), wave(100.0))
        )
        await rig.preview(rollout_id)
        assert (await rig.command(rollout_id, "start")).status == 200
        paused = rollout_of(await rig.until_state(rollout_id, "paused", within_s=60))

        assert "failed" in paused["paused_reason"], paused["paused_reason"]
        waves = waves_of(paused)
        assert [w["state"] for w in waves] == ["failed", "pending", "pending"]
        assert waves[0]["counts"]["failed"] == 2
        assert [t["command"] for t in paused["transitions"]][-1] == "pause"
        assert paused["transitions"][-1]["actor"].startswith("system:rollout-runner")

        # The canary rolled back by itself and runs its old firmware again.
        actions = await rig.actions()
        canary = {a["terminal_id"] for a in actions}
        assert len(canary) == 2
        assert {a["state"] for a in actions} == {"rolled_back"}
        assert all("new image failed to boot" in a["detail"] for a in actions), actions
        await on_version(rig, canary, "2.4.1")

        # Nobody else ever hears of 2.6.0, however long the runners go on.
        await rounds_later(rig, 3)
        assert {a["terminal_id"] for a in await rig.actions()} == canary
        assert set(rig.watch.offers()) & set(ids) == canary
        assert rollout_of(await rig.show(rollout_id))["state"] == "paused"
        assert set(rig.fleet.versions().values()) == {"2.4.1"}


# --------------------------------------------------------------------- 3. health gate


async def test_a_firmware_that_makes_card_readers_fail_is_stopped_by_the_health_gate(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    # Busy shops: about two cardholders a second at each terminal (the terminals' clocks
    # run 20 times faster), a clean reader, and an end-of-day every second so that the
    # terminals are free to reboot into new firmware now and then.
    async with rollout_rig(
        broker,
        tmp_path,
        central_settings=RUNNER,
        speed=20.0,
        transactions_per_hour=720.0,
        settle_every_s=1.0,
    ) as rig:
        plans = rig.plans(12, sites=4)
        ids = [p.terminal_id for p in plans]
        await rig.fleet.add(plans)
        await rig.registered(ids)
        artifact = await rig.upload("2.6.0", reader_error_rate=0.3)
        rollout_id = await rig.create(
            "2.6.0 reader driver", artifact, policy(wave(4, soak_s=6.0), wave(100.0))
        )
        await rig.preview(rollout_id)
        await fleet_reported(rig, ids, reports=8)
        assert (await rig.command(rollout_id, "start")).status == 200
        paused = rollout_of(await rig.until_state(rollout_id, "paused", within_s=90))

        waves = waves_of(paused)
        assert [w["state"] for w in waves] == ["failed", "pending"], waves
        gate = waves[0]["gate"]
        assert gate["passed"] is False
        before, after = gate["before"], gate["after"]
        assert before["terminals"] == after["terminals"] == 4, gate
        assert before["reads"] > 20 and after["reads"] > 20, gate
        assert before["reader_error_rate"] < 0.10, gate
        assert after["reader_error_rate"] > 0.10 + before["reader_error_rate"], gate
        assert any(r.startswith("card-reader errors") for r in gate["reasons"]), gate
        assert "card-reader errors" in paused["paused_reason"]

        # The update itself went well: the canary runs 2.6.0, nobody else was offered it.
        actions = await rig.actions()
        canary = {a["terminal_id"] for a in actions}
        assert len(canary) == 4
        assert {a["state"] for a in actions} == {"succeeded"}
        await on_version(rig, canary, "2.6.0")
        assert set(rig.watch.offers()) & set(ids) == canary

        # The fleet incident carries the before/after figures, with a child per terminal.
        assert paused["incident_id"] == gate["incident_id"]
        shown = await rig.central.get_json(f"/api/v1/incidents/{paused['incident_id']}")
        incident = shown["incident"]
        assert incident["kind"] == "fleet"
        assert incident["title"].startswith("firmware 2.6.0 regression")
        assert incident["facts"]["before"] == before and incident["facts"]["after"] == after
        assert incident["facts"]["rollout_id"] == rollout_id
        children = shown["children"]
        assert children and {c["terminal_id"] for c in children} <= canary
        # A child is a terminal whose own figures failed the gate (or, when none did
        # alone, every canary); with a dozen reads each, one terminal's rate is noisy, so
        # the children are judged by their reasons and together (one run saw a child at
        # 1 error in 11 reads beside 32 % overall).
        own_failures = all(child["facts"]["reasons"] for child in children)
        assert own_failures or len(children) == len(canary), children
        reads = sum(child["facts"]["after"]["reads"] for child in children)
        errors = sum(
            child["facts"]["after"]["reader_error_rate"] * child["facts"]["after"]["reads"]
            for child in children
        )
        assert reads and errors / reads > 0.10, children


# ----------------------------------------------------------------------- 4. a joiner


async def test_a_terminal_that_comes_online_mid_rollout_is_updated_in_a_later_wave(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    async with rollout_rig(broker, tmp_path, central_settings=RUNNER) as rig:
        plans = rig.plans(8, sites=4)
        ids = [p.terminal_id for p in plans]
        await rig.fleet.add(plans)
        await rig.registered(ids)
        artifact = await rig.upload("2.5.0")
        rollout_id = await rig.create(
            "2.5.0 with latecomers", artifact, policy(wave(2, soak_s=4.0), wave(100.0))
        )
        assert (await rig.preview(rollout_id))["terminals"] == 8
        await fleet_reported(rig, ids, reports=3)
        assert (await rig.command(rollout_id, "start")).status == 200

        # The canary is done and soaks: a terminal of a new shop comes online, old version.
        await rig.until_wave(rollout_id, 0, "soaking")
        [late] = rig.plans(1, prefix="LATE", start=90, sites=100)
        await rig.fleet.add([late])
        await rig.registered([late.terminal_id])

        done = rollout_of(await rig.until_state(rollout_id, "finished", within_s=90))
        waves = waves_of(done)
        assert [w["counts"]["joined_late"] for w in waves] == [0, 1], waves
        assert done["totals"]["succeeded"] == 9
        [action] = [a for a in await rig.actions() if a["terminal_id"] == late.terminal_id]
        assert action["state"] == "succeeded" and action["rollout_id"] == rollout_id
        assert wave_of_action(action, waves) == 1
        await on_version(rig, {late.terminal_id, *ids}, "2.5.0")


# ------------------------------------------------------------------ 5. two instances


@pytest.fixture
def shared_postgres_url(postgres_server: PrivatePostgres) -> Iterator[str]:
    """A new PostgreSQL database the two central instances share."""
    url = postgres_server.create_database()
    try:
        yield url
    finally:
        postgres_server.drop_database(url)


async def test_two_central_instances_on_one_postgresql_run_the_rollout_once(
    broker: PrivateBroker, tmp_path: Path, shared_postgres_url: str
) -> None:
    async with rollout_rig(
        broker, tmp_path, database_url=shared_postgres_url, instances=2, central_settings=RUNNER
    ) as rig:
        plans = rig.plans(20, sites=5)
        ids = [p.terminal_id for p in plans]
        await rig.fleet.add(plans)
        await rig.registered(ids)
        artifact = await rig.upload("2.5.0")
        rollout_id = await rig.create(
            "2.5.0 on two instances", artifact, policy(wave(25.0, soak_s=2.0), wave(100.0))
        )
        await rig.preview(rollout_id)
        await fleet_reported(rig, ids, reports=3)
        assert (await rig.command(rollout_id, "start")).status == 200
        done = rollout_of(await rig.until_state(rollout_id, "finished", within_s=90))
        # The other instance shows the same rollout, finished.
        other = await rig.show(rollout_id, central=rig.centrals[1])
        assert rollout_of(other)["state"] == "finished"

        actions = await rig.actions()
        assert sorted(a["terminal_id"] for a in actions) == sorted(ids), "one Action each"
        assert {a["state"] for a in actions} == {"succeeded"}
        offers = rig.watch.wire_ids()
        assert all(len(offers[t]) == 1 for t in ids), offers
        assert [w["state"] for w in waves_of(done)] == ["passed", "passed"]
        commands = [t["command"] for t in done["transitions"]]
        assert commands.count("finish") == 1 and commands.count("start") == 1, commands
        # Both runners went round all along; together they made one Action per terminal.
        runners = [c.service.rollout_runner for c in rig.centrals]
        assert all(r.stats.rounds > 5 for r in runners), [r.stats for r in runners]
        assert sum(r.stats.offered for r in runners) == len(ids), [r.stats for r in runners]
        await on_version(rig, set(ids), "2.5.0")


# ---------------------------------------------------------------------- 6. four eyes


async def test_a_start_without_the_second_approver_or_by_support_is_refused_and_audited(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    async with rollout_rig(
        broker, tmp_path, central_settings=RUNNER, timings=FleetAgentTimings(health_interval_s=5)
    ) as rig:
        plans = rig.plans(3)
        await rig.fleet.add(plans)
        await rig.registered(p.terminal_id for p in plans)
        artifact = await rig.upload("2.5.0")
        rollout_id = await rig.create(
            "2.5.0 four eyes",
            artifact,
            policy(wave(100.0, soak_s=0.0), require_second_approver=True),
            reason_code="security_fix",
            reason="CVE fix",
        )
        await rig.preview(rollout_id)

        alone = await rig.command(rollout_id, "start", reason_code="security_fix")
        assert alone.status == 403, alone
        own = await rig.command(rollout_id, "approve", reason_code="security_fix")
        assert own.status == 403, own
        support = await rig.command(rollout_id, "start", as_="sam", reason_code="security_fix")
        assert support.status == 403, support
        assert "ops" in support.body["detail"], support
        assert rollout_of(await rig.show(rollout_id))["state"] == "previewed"
        assert not await rig.actions(), "nothing was offered"

        refused = [e for e in await rig.audit("rollout.") if e.action.endswith(".refused")]
        who = [(e.actor, e.action) for e in refused]
        assert who == [
            ("token:olga", "rollout.start.refused"),
            ("token:olga", "rollout.approve.refused"),
            ("token:sam", "rollout.start.refused"),
        ]
        assert all(e.target == f"rollout:{rollout_id}" and e.detail["why"] for e in refused)

        # With piotr's approval olga may start it, and it runs.
        approved = await rig.command(rollout_id, "approve", as_="piotr", reason_code="security_fix")
        assert approved.status == 200, approved
        go = await rig.command(rollout_id, "start", reason_code="security_fix")
        assert go.status == 200, go
        done = rollout_of(await rig.until_state(rollout_id, "finished", within_s=60))
        assert done["approved_by"] == "token:piotr"
        audited = [(e.actor, e.action) for e in await rig.audit("rollout.")]
        assert ("token:piotr", "rollout.approve") in audited
        assert ("token:olga", "rollout.start") in audited
