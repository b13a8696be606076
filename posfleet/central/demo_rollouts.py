"""The demo's firmware rollouts: prepared at start, previewed and started on cue by its admin.

``posfleet demo`` rolls its release out as staff would, through the store's rollout
commands (:mod:`posfleet.firmware.rollouts`), as the demo's admin user with a reason code:

- **the release**, pos-os 5.3.0, to every terminal of one site
  (:func:`~posfleet.simulator.demo_story.rollout_sites`), in waves: a canary of one
  terminal, then 50 %, then 100 %, each wave soaking briefly and passing the
  business-health gate before the next;
- **the pilot**, the boot-looping release candidate, to the terminals of a second site,
  canary first: the canary rolls back on its own and the rollout pauses itself before
  any other terminal is offered it.

Both are created as drafts at start (so the banner can name them), previewed once their
terminals have reported what they run, and started at the storyline's
:data:`~posfleet.simulator.demo_story.FIRMWARE_ROLLOUT_AT_S` (scaled by the story speed),
once every terminal has sent health reports for a whole soak: the gate compares each
updated terminal with its own figures before the update, and a terminal without them
would fail it. The maintenance window opens a minute before the demo starts, in the
sites' own time zone; the soak, pace and deadlines shrink with the story speed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.central.demo_firmware import (
    DEMO_ACTOR,
    IMAGE_NAME,
    PILOT_VERSION,
    RELEASE_VERSION,
    window_open_now,
)
from posfleet.contract import utcnow
from posfleet.firmware.errors import FirmwareError
from posfleet.firmware.rollout_model import (
    ReasonCode,
    RolloutPolicy,
    RolloutState,
    TargetFilter,
    WaveSpec,
)
from posfleet.firmware.rollouts import (
    create_rollout,
    list_rollouts,
    preview_rollout,
    run_command,
)
from posfleet.simulator.demo_story import FIRMWARE_ROLLOUT_AT_S, rollout_sites
from posfleet.simulator.fleet_file import FleetTerminal
from posfleet.store.accounts import Role
from posfleet.store.engine import write_transaction
from posfleet.store.schema import health_samples
from posfleet.store.terminals import get_terminal

log = logging.getLogger(__name__)

SOAK_AT_SPEED_1 = timedelta(minutes=1)
"""How long each wave soaks before its gate, at story speed 1."""
SOAK_HEALTH_REPORTS = 3
"""A soak spans at least this many health reports: the gate needs two on each side."""
JITTER_AT_SPEED_1_S = 10.0
OFFERS_PER_MINUTE_AT_SPEED_1 = 60
DEADLINE_AT_SPEED_1 = timedelta(minutes=30)
MIN_DEADLINE = timedelta(minutes=1)
READY_WAIT_S = 120.0
"""How long the demo waits for its terminals' reports before it goes on regardless."""
READY_POLL_S = 0.5
UNFINISHED = (
    RolloutState.DRAFT,
    RolloutState.PREVIEWED,
    RolloutState.AWAITING_APPROVAL,
    RolloutState.RUNNING,
    RolloutState.PAUSED,
)
"""States of a rollout an earlier run may have left behind (aborted at start)."""


@dataclass(frozen=True, slots=True)
class DemoPace:
    """How fast the demo plays: its story speed and its terminals' health interval."""

    speed: float = 1.0
    health_interval_s: float = 10.0

    @property
    def soak(self) -> timedelta:
        """Each wave's soak: a minute at speed 1, never fewer than three health reports."""
        reports = timedelta(seconds=SOAK_HEALTH_REPORTS * self.health_interval_s)
        return max(SOAK_AT_SPEED_1 / self.speed, reports)

    @property
    def deadline(self) -> timedelta:
        """Every Action's deadline: half an hour at speed 1, never under a minute."""
        return max(MIN_DEADLINE, DEADLINE_AT_SPEED_1 / self.speed)

    @property
    def runner_interval_s(self) -> float:
        """The rollout runner's round: the service's 5 s at speed 1, shorter when faster
        (never under half a second)."""
        return max(0.5, 5.0 / self.speed)

    @property
    def joiner_scan_s(self) -> float:
        """How often a rollout looks for joiners: 10 s at speed 1, never under a second."""
        return max(1.0, 10.0 / self.speed)

    def policy(self, waves: Sequence[WaveSpec], timezone: str) -> RolloutPolicy:
        """The demo's policy: ``waves``, a window open now in ``timezone``, its pace."""
        return RolloutPolicy(
            waves=tuple(waves),
            offers_per_minute=max(1, min(10_000, round(OFFERS_PER_MINUTE_AT_SPEED_1 * self.speed))),
            jitter_s=min(3600.0, JITTER_AT_SPEED_1_S / self.speed),
            window=window_open_now(timezone),
            action_deadline=self.deadline,
        )

    def release_waves(self) -> tuple[WaveSpec, ...]:
        """A canary of one terminal, then half the site, then all of it."""
        soak = self.soak
        return (
            WaveSpec(count=1, soak=soak),
            WaveSpec(percent=50.0, soak=soak),
            WaveSpec(percent=100.0, soak=soak),
        )

    def pilot_waves(self) -> tuple[WaveSpec, ...]:
        """A canary of one terminal, then the rest of the site."""
        return (WaveSpec(count=1, soak=self.soak), WaveSpec(percent=100.0, soak=self.soak))


@dataclass(frozen=True, slots=True)
class DemoRollout:
    """One rollout the demo made, and what it is for."""

    rollout_id: int
    version: str
    site_id: str
    terminal_ids: tuple[str, ...]
    waves: tuple[str, ...]
    """Each wave described (``1 terminal``, ``50 %``)."""
    reason_code: ReasonCode
    reason: str

    @property
    def artifact(self) -> str:
        """``pos-os@5.3.0``."""
        return f"{IMAGE_NAME}@{self.version}"


async def abort_leftover_rollouts(engine: AsyncEngine) -> int:
    """Abort the rollouts an earlier run left unfinished; how many.

    Their simulated terminals start afresh, and the runner must not go on offering them
    an earlier run's waves.
    """
    async with engine.connect() as conn:
        leftovers = await list_rollouts(conn, states=UNFINISHED, limit=500)
    aborted = 0
    for rollout in leftovers:
        try:
            await run_command(
                engine, "abort", rollout.id, actor=DEMO_ACTOR, actor_role=Role.ADMIN,
                reason_code=ReasonCode.OTHER.value,
                reason_text="left by an earlier demo run; its simulated terminals start afresh",
            )  # fmt: skip
        except FirmwareError as exc:
            log.info("rollout #%d from an earlier demo run: %s", rollout.id, exc)
            continue
        aborted += 1
    return aborted


async def create_demo_rollouts(
    engine: AsyncEngine, terminals: Sequence[FleetTerminal], *, actor: str, pace: DemoPace
) -> list[DemoRollout]:
    """The release's and the pilot's rollouts as drafts, created by ``actor``.

    A refusal (an image the centre did not take) is logged; the demo runs on without it.
    """
    release_site, pilot_site = rollout_sites(terminals)
    plans = [
        (RELEASE_VERSION, release_site, pace.release_waves(), ReasonCode.BUG_FIX,
         "faster contactless reads, printer jam fix"),
    ]  # fmt: skip
    if pilot_site is not None:
        plans.append(
            (PILOT_VERSION, pilot_site, pace.pilot_waves(), ReasonCode.FEATURE,
             "pilot of the 5.4 release candidate at one site, canary first"),
        )  # fmt: skip
    made = []
    for version, site, waves, code, reason in plans:
        members = [t for t in terminals if t.site_id == site]
        name = f"{IMAGE_NAME} {version} " + ("pilot " if version == PILOT_VERSION else "") + site
        try:
            async with write_transaction(engine) as conn:
                record = await create_rollout(
                    conn,
                    name=name,
                    artifact=f"{IMAGE_NAME}@{version}",
                    target=TargetFilter(site_ids=(site,)),
                    policy=pace.policy(waves, members[0].timezone),
                    actor=actor,
                    actor_role=Role.ADMIN,
                    reason_code=code.value,
                    reason_text=reason,
                )
        except FirmwareError as exc:
            log.warning("the demo could not create its rollout of %s: %s", name, exc)
            continue
        made.append(
            DemoRollout(
                record.id, version, site, tuple(t.terminal_id for t in members),
                tuple(w.describe() for w in waves), code, reason,
            )
        )  # fmt: skip
    return made


async def start_on_cue(
    engine: AsyncEngine,
    rollouts: Sequence[DemoRollout],
    *,
    actor: str,
    pace: DemoPace,
    since: datetime,
    wake: Callable[[], None],
) -> None:
    """Preview the rollouts once their terminals reported; start them on the story's cue.

    ``since``: when this run's terminals began reporting (an earlier run's health
    samples make no baseline for today's). ``wake`` runs the rollout runner's next round
    at once.
    """
    loop = asyncio.get_running_loop()
    cue = loop.time() + FIRMWARE_ROLLOUT_AT_S / pace.speed
    wanted = {tid: r.version for r in rollouts for tid in r.terminal_ids}
    await _await_reports(engine, wanted, since=since, baseline=None)
    for rollout in rollouts:
        await _preview(engine, rollout, actor=actor)
    await asyncio.sleep(max(0.0, cue - loop.time()))
    await _await_reports(engine, wanted, since=since, baseline=pace.soak)
    for rollout in rollouts:
        try:
            record = await run_command(
                engine, "start", rollout.rollout_id, actor=actor, actor_role=Role.ADMIN,
                reason_code=rollout.reason_code.value,
                reason_text=f"{rollout.site_id} has closed for the night and settled",
            )  # fmt: skip
        except FirmwareError as exc:
            log.warning("the demo could not start rollout #%d: %s", rollout.rollout_id, exc)
            continue
        log.info(
            "demo: rollout #%d (%s) started: %s, waves %s",
            record.id,
            record.name,
            record.artifact,
            ", ".join(str(w.planned) for w in record.waves),
        )
    wake()


async def _preview(engine: AsyncEngine, rollout: DemoRollout, *, actor: str) -> None:
    try:
        async with write_transaction(engine) as conn:
            preview = await preview_rollout(conn, rollout.rollout_id, actor=actor)
    except FirmwareError as exc:
        log.warning("the demo could not preview rollout #%d: %s", rollout.rollout_id, exc)
        return
    log.info(
        "demo: rollout #%d previewed: %d terminal(s) in waves of %s; excluded: %s",
        rollout.rollout_id,
        len(preview.rows),
        ", ".join(str(w.terminals) for w in preview.waves),
        preview.exclusion_counts() or "none",
    )
    for warning in preview.warnings:
        log.info("demo: rollout #%d: %s", rollout.rollout_id, warning)


async def _await_reports(
    engine: AsyncEngine,
    wanted: dict[str, str],
    *,
    since: datetime,
    baseline: timedelta | None,
    timeout_s: float = READY_WAIT_S,
) -> None:
    """Until every terminal is online and reports a version other than the one it gets,
    and with ``baseline``, has sent health reports since ``since`` for at least that long.

    A registry row from an earlier run may still show what a terminal ran then; a
    simulated terminal starts on its factory firmware, and its fresh inventory says so.
    """
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout_s
    while True:
        waiting = []
        async with engine.connect() as conn:
            for terminal_id, version in wanted.items():
                record = await get_terminal(conn, terminal_id)
                if (
                    record is None
                    or not record.online
                    or record.firmware_version in (None, version)
                ):
                    waiting.append(terminal_id)
                elif baseline is not None:
                    c = health_samples.c
                    first = await conn.scalar(
                        sa.select(sa.func.min(c.ts)).where(
                            c.terminal_id == terminal_id, c.ts >= since
                        )
                    )
                    if first is None or first > utcnow() - baseline:
                        waiting.append(terminal_id)
        if not waiting:
            return
        if loop.time() >= give_up:
            log.warning(
                "the demo goes on with its rollouts although %s did not report in time",
                ", ".join(waiting),
            )
            return
        await asyncio.sleep(READY_POLL_S)
