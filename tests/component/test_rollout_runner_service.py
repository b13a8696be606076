"""The central service runs the rollout runner: a rollout started from the store is
offered through the service's real broker, and a stopped service gives its lease back.

The session's broker still holds earlier tests' retained inventories, which the service
takes in and which may join a rollout that targets everything: count this test's own.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from posfleet.firmware.action_records import list_actions
from posfleet.firmware.action_states import ActionState
from posfleet.firmware.rollouts import preview_rollout, run_command
from posfleet.store import create_engine, upgrade_engine, write_transaction
from posfleet.store.schema import rollouts
from tests.component.firmware_rows import T0
from tests.component.rollout_rows import OPS, add_fleet, artifacts, new_rollout, quick_policy
from tests.harness import PrivateBroker, async_wait_for
from tests.harness.central_service import start_central


async def test_the_service_offers_a_started_rollout_and_releases_its_lease(
    broker: PrivateBroker, tmp_path: Path, sqlite_url: str
) -> None:
    engine = create_engine(sqlite_url)
    try:
        await upgrade_engine(engine)
        fleet = await add_fleet(engine, 3, prefix="T-RUN")
        new, _ = await artifacts(engine)
        rollout = await new_rollout(engine, new, quick_policy(100))
        async with write_transaction(engine) as conn:
            await preview_rollout(conn, rollout.id, now=T0)
        async with start_central(broker, tmp_path / "var", sqlite_url):
            await run_command(engine, "start", rollout.id, actor=OPS, actor_role="ops",
                              reason_code="feature")  # fmt: skip

            async def offered() -> bool:
                async with engine.connect() as conn:
                    made = await list_actions(conn, states=[ActionState.OFFERED])
                return sorted(a.terminal_id for a in made if a.terminal_id in fleet) == fleet

            await async_wait_for(offered, timeout=20, description="every terminal offered")
            async with engine.connect() as conn:
                owner = await conn.scalar(sa.select(rollouts.c.lease_owner))
            assert owner is not None and owner.startswith("central-test-")
        async with engine.connect() as conn:
            owner = await conn.scalar(sa.select(rollouts.c.lease_owner))
            made = await list_actions(conn)
        assert owner is None
        assert {a.rollout_id for a in made} == {rollout.id}
    finally:
        await engine.dispose()


async def test_a_start_through_the_api_wakes_the_runner_at_once(
    broker: PrivateBroker, tmp_path: Path, sqlite_url: str
) -> None:
    """Staff who press start see offers go out now, not at the runner's next round; and
    the wave's second offer, paced half a second after the first, goes out at its time,
    not five minutes later at the round after."""
    engine = create_engine(sqlite_url)
    try:
        await upgrade_engine(engine)
        fleet = await add_fleet(engine, 2, prefix="T-WAKE")
        new, _ = await artifacts(engine)
        rollout = await new_rollout(engine, new, quick_policy(100, offers_per_minute=120))
        async with write_transaction(engine) as conn:
            await preview_rollout(conn, rollout.id, now=T0)
        # A round every 5 minutes: only the start's wake-up can offer within the wait.
        async with start_central(
            broker, tmp_path / "var", sqlite_url, rollout_interval_s=300
        ) as central:
            runner = central.service.rollout_runner
            await async_wait_for(
                lambda: runner.stats.rounds >= 1, timeout=10, description="first round"
            )
            response = await central.http.post(
                f"{central.service.url}/api/v1/rollouts/{rollout.id}/start",
                json={"reason_code": "feature", "reason": "CAB-7"},
                headers={"Authorization": f"Bearer {central.token}"},
            )
            assert response.status == 200, await response.text()

            async def offered() -> bool:
                async with engine.connect() as conn:
                    made = await list_actions(conn, states=[ActionState.OFFERED])
                return sorted(a.terminal_id for a in made if a.terminal_id in fleet) == fleet

            await async_wait_for(offered, timeout=30, description="offers after the start")
    finally:
        await engine.dispose()
