"""A fleet, artifacts and rollouts in a real store, for the rollout store and runner tests."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.contract import Inventory, State, utcnow
from posfleet.firmware.artifacts import ArtifactRecord
from posfleet.firmware.rollout_model import RolloutPolicy, TargetFilter, WaveSpec
from posfleet.firmware.rollout_records import RolloutRecord
from posfleet.firmware.rollouts import create_rollout
from posfleet.store import apply_inventory, apply_state, write_transaction
from tests.component.firmware_rows import T0, add_artifact, signed_manifest

OPS = "user:olga"
EVERYTHING = TargetFilter()
OTHER_OPS = "user:omar"


async def add_fleet(
    engine: AsyncEngine,
    count: int,
    *,
    prefix: str = "T",
    sites: int = 5,
    firmware: str = "5.2.1",
    model: str = "V400m",
    online: bool = True,
    seen: datetime = T0,
) -> list[str]:
    """``count`` registered terminals spread over ``sites`` sites; their ids."""
    ids = [f"{prefix}-{n:03d}" for n in range(count)]
    async with write_transaction(engine) as conn:
        for n, tid in enumerate(ids):
            await register(conn, tid, site=f"S-{n % sites}", firmware=firmware, model=model,
                           online=online, seen=seen)  # fmt: skip
    return ids


async def register(
    conn: AsyncConnection,
    terminal_id: str,
    *,
    site: str = "S-0",
    firmware: str = "5.2.1",
    model: str = "V400m",
    online: bool = True,
    seen: datetime = T0,
) -> None:
    """Birth and inventory of one terminal, on an open connection."""
    await apply_state(
        conn,
        terminal_id,
        State(online=online, agent_version="1.4.0", boot_id="boot-1", ts=seen),
        now=seen,
    )
    await apply_inventory(
        conn,
        terminal_id,
        Inventory(
            model=model,
            serial=f"SN-{terminal_id}",
            hw_revision="B",
            firmware_version=firmware,
            agent_version="1.4.0",
            merchant_id="M-1",
            site_id=site,
            timezone="Europe/Berlin",
            ts=seen,
        ),
        now=seen,
    )


async def artifacts(engine: AsyncEngine) -> tuple[ArtifactRecord, ArtifactRecord]:
    """pos-os 5.3.0 and its rollback image 5.2.1 (signed with allow_downgrade)."""
    new = await add_artifact(engine, signed_manifest("5.3.0", min_version="5.0.0"))
    old = await add_artifact(engine, signed_manifest("5.2.1", allow_downgrade=True))
    return new, old


def quick_policy(
    *waves: float, soak_s: float = 0, second_approver: bool = False, **options: object
) -> RolloutPolicy:
    """Waves by percent, no soak unless asked, fast offers."""
    return RolloutPolicy(
        waves=tuple(WaveSpec(percent=p, soak=timedelta(seconds=soak_s)) for p in waves)
        or (WaveSpec(percent=100.0, soak=timedelta(seconds=soak_s)),),
        require_second_approver=second_approver,
        **{"offers_per_minute": 6000, "jitter_s": 0, **options},  # type: ignore[arg-type]
    )


async def new_rollout(
    engine: AsyncEngine,
    artifact: ArtifactRecord,
    policy: RolloutPolicy,
    *,
    target: TargetFilter = EVERYTHING,
    name: str = "pos-os 5.3.0 everywhere",
    rollback: ArtifactRecord | None = None,
    actor: str = OPS,
) -> RolloutRecord:
    """A draft rollout created by ``actor``."""
    async with write_transaction(engine) as conn:
        return await create_rollout(
            conn,
            name=name,
            artifact=artifact,
            target=target,
            policy=policy,
            actor=actor,
            reason_code="bug_fix",
            reason_text="printer jam on cold start",
            rollback_artifact=rollback,
            now=T0,
        )


class Clock:
    """The runner's clock: the real time plus an offset a test moves on."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def shift(self, **delta: float) -> None:
        """Move the clock on by ``timedelta(**delta)``."""
        self.offset += timedelta(**delta)
