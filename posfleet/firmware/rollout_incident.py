"""The fleet incident a failed health gate opens: "firmware X.Y regression".

One fleet incident per rollout and firmware version (its open key names both, so a second
runner, or the same wave judged again, adds to it instead of opening another), with one
child per affected terminal: each terminal whose own figures regressed beyond the gate's
tolerances, or every judged terminal when only their sum did. Parent and children carry
the before and after figures in their facts. The texts are the diagnostics' own for a
firmware regression (:data:`~posfleet.diagnostics.fleet_correlation.SHARED_CAUSES`), and
the incidents are opened with :func:`~posfleet.store.incidents.open_incident`, like
every other incident, so the incident pages, notifications and analytics show them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import Component, Severity
from posfleet.diagnostics.fleet_correlation import SHARED_CAUSES
from posfleet.diagnostics.rule_model import CorrelateBy, Escalation
from posfleet.firmware.rollout_health import TerminalFigures, WaveHealth
from posfleet.firmware.rollout_model import GateTolerances, GateVerdict
from posfleet.firmware.rollout_records import RolloutRecord
from posfleet.store.incidents import IncidentKind, IncidentSpec, open_incident, set_parent
from posfleet.store.schema import incidents, terminals

RULE_ID = "firmware.regression"
"""The rule id of the regression incidents (no diagnostic rule: the health gate's)."""


def affected(health: WaveHealth, tolerances: GateTolerances) -> list[TerminalFigures]:
    """The terminals whose own figures regressed; all judged ones if none did alone."""
    worse = [t for t in health.terminals if not t.verdict(tolerances).passed]
    return worse or list(health.terminals)


def _figures_text(verdict: GateVerdict) -> str:
    b, a = verdict.before, verdict.after
    return (
        f"card-reader errors {b.reader_error_rate:.1%} -> {a.reader_error_rate:.1%}, "
        f"declines {b.decline_rate:.1%} -> {a.decline_rate:.1%}, "
        f"reboots per terminal {b.reboots_per_terminal:.2f} -> {a.reboots_per_terminal:.2f}"
    )


async def open_regression_incident(
    conn: AsyncConnection,
    rollout: RolloutRecord,
    wave: int,
    verdict: GateVerdict,
    health: WaveHealth,
    *,
    now: datetime,
) -> int:
    """Open (or add to) the rollout's regression fleet incident; returns its id."""
    version = rollout.version
    shared = SHARED_CAUSES[CorrelateBy.FIRMWARE]
    members = affected(health, rollout.policy.gate)
    figures = {"before": verdict.before.to_json(), "after": verdict.after.to_json()}
    common: dict[str, Any] = {
        "rollout_id": rollout.id,
        "rollout": rollout.name,
        "wave": wave + 1,
        "reasons": list(verdict.reasons),
    }
    parent = IncidentSpec(
        rule_id=RULE_ID,
        kind=IncidentKind.FLEET,
        correlation=f"firmware:{version}/rollout:{rollout.id}",
        title=f"firmware {version} regression: {verdict.summary()}"[:200],
        component=Component.FIRMWARE.value,
        severity=Severity.ERROR.value,
        escalation=Escalation.REMOTE_FIX.value,
        cause=(
            f"{shared.cause.format(value=version)} The health gate of rollout "
            f"#{rollout.id} ({rollout.name}) after wave {wave + 1} found, over "
            f"{verdict.after.terminals} updated terminals against their own figures before "
            f"the update: {_figures_text(verdict)}. The rollout is paused: no other "
            "terminal is offered this firmware."
        ),
        remedy=(
            *(step.format(value=version) for step in shared.remedy),
            f"Ops roll the updated terminals back (posfleet rollout rollback {rollout.id}) "
            f"or, if the figures are explained otherwise, resume the rollout",
        ),
        facts={
            **common,
            **figures,
            "correlated_by": CorrelateBy.FIRMWARE.value,
            "value": version,
            "children": len(members),
        },
        firmware_version=version,
    )
    # Never a reopen (the store does not reopen): a new gate failure is news.
    parent_id, _ = await open_incident(conn, parent, now=now)
    identity = await _identities(conn, [m.terminal_id for m in members])
    child_ids = []
    for member in members:
        own = member.verdict(rollout.policy.gate)
        who = identity.get(member.terminal_id, {})
        child = IncidentSpec(
            rule_id=RULE_ID,
            terminal_id=member.terminal_id,
            title=f"firmware {version} regression on {member.terminal_id}"[:200],
            component=Component.FIRMWARE.value,
            severity=Severity.ERROR.value,
            escalation=Escalation.REMOTE_FIX.value,
            cause=(
                f"Since {member.terminal_id} installed firmware {version} (rollout "
                f"#{rollout.id}, wave {wave + 1}): {_figures_text(own)}."
            ),
            remedy=(
                "Nothing to fix on site: the fault came with the firmware; see the fleet "
                "incident for the rollback",
            ),
            facts={
                **common,
                "reasons": list(own.reasons),
                "before": own.before.to_json(),
                "after": own.after.to_json(),
            },
            firmware_version=version,
            model=who.get("model"),
            site_id=who.get("site_id"),
            merchant_id=who.get("merchant_id"),
        )
        child_id, _ = await open_incident(conn, child, now=now)
        child_ids.append(child_id)
    await set_parent(conn, child_ids, parent_id, now=now)
    children = await conn.scalar(
        sa.select(sa.func.count()).select_from(incidents).where(incidents.c.parent_id == parent_id)
    )
    await conn.execute(
        sa.update(incidents)
        .where(incidents.c.id == parent_id)
        .values(facts={**parent.facts, "children": int(children or 0)}, updated_at=now)
    )
    return parent_id


async def _identities(
    conn: AsyncConnection, terminal_ids: Sequence[str]
) -> dict[str, dict[str, str | None]]:
    if not terminal_ids:
        return {}
    t = terminals.c
    rows = await conn.execute(
        sa.select(t.terminal_id, t.model, t.site_id, t.merchant_id).where(
            t.terminal_id.in_(list(terminal_ids))
        )
    )
    return {
        row.terminal_id: {"model": row.model, "site_id": row.site_id,
                          "merchant_id": row.merchant_id}
        for row in rows
    }  # fmt: skip
