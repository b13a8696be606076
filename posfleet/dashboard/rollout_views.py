"""What the rollout templates show, built from the store's records; pure.

The templates only lay things out: which buttons a person sees (the state's commands
that their role may give), how a state is labelled and coloured, what each wave's
progress and gate figures are, and which rows of the dry run are listed, are decided
here, where a unit test can reach them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from posfleet.dashboard.access import FRAGMENT_PREFIX
from posfleet.dashboard.rollout_body import MAX_REASON
from posfleet.dashboard.templating import _, duration
from posfleet.firmware.rollout_model import GateVerdict, RolloutState, WaveSpec, WaveState
from posfleet.firmware.rollout_records import RolloutPreview, RolloutRecord, WaveRecord
from posfleet.firmware.rollout_transitions import REQUIRED_ROLE
from posfleet.store.accounts import Role

ROLLOUTS_PATH = "/firmware/rollouts"
NEW_ROLLOUT_PATH = f"{ROLLOUTS_PATH}/new"
STEER_FORM_ID = "steer"
PREVIEW_ROWS_PER_WAVE = 20
PREVIEW_EXCLUDED_SHOWN = 50

STATE_LABELS = {
    RolloutState.DRAFT: _("draft"),
    RolloutState.PREVIEWED: _("previewed"),
    RolloutState.AWAITING_APPROVAL: _("awaiting approval"),
    RolloutState.RUNNING: _("running"),
    RolloutState.PAUSED: _("paused"),
    RolloutState.FINISHED: _("finished"),
    RolloutState.ABORTED: _("aborted"),
    RolloutState.ROLLED_BACK: _("rolled back"),
}
STATE_KINDS = {
    RolloutState.RUNNING: "ok",
    RolloutState.FINISHED: "ok",
    RolloutState.PAUSED: "warn",
    RolloutState.ABORTED: "bad",
    RolloutState.ROLLED_BACK: "bad",
}
WAVE_LABELS = {
    WaveState.PENDING: _("pending"),
    WaveState.RUNNING: _("running"),
    WaveState.SOAKING: _("soaking"),
    WaveState.PASSED: _("passed"),
    WaveState.FAILED: _("failed"),
}
WAVE_KINDS = {WaveState.PASSED: "ok", WaveState.FAILED: "bad", WaveState.SOAKING: "warn"}
BUTTONS = (
    ("preview", _("Preview")),
    ("request_approval", _("Ask for approval")),
    ("approve", _("Approve")),
    ("start", _("Start")),
    ("pause", _("Pause")),
    ("resume", _("Resume")),
    ("abort", _("Abort")),
    ("rollback", _("Roll back")),
)
DANGEROUS = frozenset({"abort", "rollback"})
EXCLUSION_LABELS = {
    "wrong_model": _("not built for its model"),
    "no_inventory": _("no inventory reported yet"),
    "unknown_version": _("firmware version cannot be compared"),
    "already_current": _("already runs this version"),
    "below_min_version": _("too old to update from"),
    "downgrade": _("runs a newer version"),
    "offline_too_long": _("offline too long"),
    "busy": _("another update under way"),
}
"""Why a terminal is left out, in words (:class:`~posfleet.firmware.rollout_model.Exclusion`)."""


def exclusion_label(reason: str) -> str:
    """An exclusion reason in words; an unknown one as stored."""
    return EXCLUSION_LABELS.get(reason, reason)


def rollout_path(rollout_id: int) -> str:
    """The page of one rollout."""
    return f"{ROLLOUTS_PATH}/{rollout_id}"


def state_label(state: RolloutState) -> str:
    """A rollout state in words."""
    return STATE_LABELS.get(state, state.value)


def wave_text(record: RolloutRecord) -> str:
    """``2 of 4`` once started; ``4 waves`` before."""
    count = len(record.policy.waves)
    if record.started_at is None:
        return _("%d waves") % count if count != 1 else _("1 wave")
    return _("%(wave)d of %(count)d") % {"wave": record.current_wave + 1, "count": count}


def list_rows(records: Sequence[RolloutRecord]) -> list[dict[str, Any]]:
    """One row per rollout for the rollouts table."""
    return [
        {
            "id": r.id,
            "name": r.name,
            "path": rollout_path(r.id),
            "artifact_label": r.artifact,
            "state_label": state_label(r.state),
            "state_kind": STATE_KINDS.get(r.state, "muted"),
            "paused_reason": r.paused_reason if r.state is RolloutState.PAUSED else None,
            "wave_text": wave_text(r),
            "done": r.totals.succeeded + r.totals.failed,
            "total": r.totals.terminals,
            "created_at": r.created_at,
            "created_by": r.created_by,
        }
        for r in records
    ]


@dataclass(frozen=True)
class Button:
    """A steering button: posts the page's reason form to ``action``."""

    command: str
    label: str
    action: str
    danger: bool


def buttons(record: RolloutRecord, actor: str, role: Role) -> list[Button]:
    """The commands the state allows that ``role`` may give, minus the ones the
    four-eyes rule would refuse ``actor`` for certain (so nobody is offered a trap)."""
    allowed = set(record.allowed_commands)
    if record.state is RolloutState.DRAFT:
        allowed.add("preview")
    else:
        allowed.discard("preview")
    four_eyes = record.policy.require_second_approver
    creator = actor == record.created_by
    if not four_eyes:
        allowed.discard("request_approval")
        allowed.discard("approve")
    else:
        if creator:
            allowed -= {"approve", "resume", "rollback"}
        if record.approved_by is None:
            allowed.discard("start")
        if record.state is RolloutState.PREVIEWED and not creator:
            allowed.discard("request_approval")
            allowed.add("approve")  # the store asks for the approval and records it at once
    found = []
    for command, label in BUTTONS:
        needed = REQUIRED_ROLE.get(command, Role.OPS)
        if command in allowed and role.permits(needed):
            action = f"{rollout_path(record.id)}/{command}"
            found.append(Button(command, label, action, command in DANGEROUS))
    return found


def _thresholds(spec: WaveSpec) -> str:
    action = _("aborts") if spec.on_error.value == "abort" else _("pauses")
    return _("%(ok)s must succeed, %(err)s failing %(action)s it, %(soak)s soak") % {
        "ok": f"{spec.success_threshold:.0%}",
        "err": f"{spec.error_threshold:.0%}",
        "action": action,
        "soak": duration(spec.soak),
    }


def waves_text(waves: Sequence[WaveSpec]) -> str:
    """The policy's waves in one line: sizes, then the thresholds (once if all share them)."""
    sizes = ", ".join(spec.describe() for spec in waves)
    rules = {_thresholds(spec) for spec in waves}
    if len(rules) == 1:
        return _("%(sizes)s (each: %(rules)s)") % {"sizes": sizes, "rules": rules.pop()}
    return "; ".join(f"{spec.describe()} ({_thresholds(spec)})" for spec in waves)


def approval_note(record: RolloutRecord) -> str | None:
    """What a rollout that needs a second approver still waits for, if anything."""
    if not record.policy.require_second_approver or record.state not in (
        RolloutState.PREVIEWED,
        RolloutState.AWAITING_APPROVAL,
    ):
        return None
    if record.approved_by is None:
        return _("Waits for the approval of someone other than %s.") % record.created_by
    return _("Approved by %s; it may start.") % record.approved_by


@dataclass(frozen=True)
class GateRow:
    """One figure of the health gate: before, after and how much rise is tolerated."""

    label: str
    before: str
    after: str
    tolerance: str


def gate_rows(verdict: GateVerdict, spec_gate: Any) -> list[GateRow]:
    """The gate's figures as the wave card's table shows them."""
    before, after = verdict.before, verdict.after
    return [
        GateRow(
            _("Card-reader errors"),
            f"{before.reader_error_rate:.1%}",
            f"{after.reader_error_rate:.1%}",
            _("+%.1f points") % spec_gate.reader_error_rate_points,
        ),
        GateRow(
            _("Declines"),
            f"{before.decline_rate:.1%}",
            f"{after.decline_rate:.1%}",
            _("+%.1f points") % spec_gate.decline_rate_points,
        ),
        GateRow(
            _("Reboots per terminal"),
            f"{before.reboots_per_terminal:.2f}",
            f"{after.reboots_per_terminal:.2f}",
            f"+{spec_gate.reboots_per_terminal:.2f}",
        ),
        GateRow(_("Terminals judged"), str(before.terminals), str(after.terminals), ""),
    ]


def _wave_view(index: int, spec: WaveSpec, wave: WaveRecord | None, record: RolloutRecord) -> Any:
    state = wave.state if wave is not None else WaveState.PENDING
    counts = wave.counts if wave is not None else None
    total = counts.terminals if counts is not None else 0
    gate = wave.gate if wave is not None else None
    return {
        "number": index + 1,
        "spec": spec.describe(),
        "state": state.value,
        "state_label": WAVE_LABELS.get(state, state.value),
        "state_kind": WAVE_KINDS.get(state, "muted"),
        "current": record.started_at is not None and index == record.current_wave,
        "total": total,
        "planned": wave.planned if wave is not None else None,
        "counts": counts,
        "done": (counts.succeeded + counts.failed) if counts is not None else 0,
        "started_at": wave.started_at if wave is not None else None,
        "soak_until": wave.soak_until if wave is not None else None,
        "finished_at": wave.finished_at if wave is not None else None,
        "reason": wave.reason if wave is not None else "",
        "accepted_by": wave.accepted_by if wave is not None else None,
        "gate": gate,
        "gate_rows": gate_rows(gate, record.policy.gate) if gate is not None else [],
        "without_figures": (wave.gate_detail.get("without_figures") or [])
        if wave is not None
        else [],
        "success_threshold": spec.success_threshold,
        "error_threshold": spec.error_threshold,
        "soak": spec.soak,
    }


def live_context(record: RolloutRecord, actor: str, role: Role) -> dict[str, Any]:
    """The rollout page's live section: state, buttons, waves and totals."""
    by_index = {w.wave: w for w in record.waves}
    return {
        "rollout": record,
        "state_label": state_label(record.state),
        "state_kind": STATE_KINDS.get(record.state, "muted"),
        "paused_reason": record.paused_reason if record.state is RolloutState.PAUSED else None,
        "buttons": buttons(record, actor, role),
        "form_id": STEER_FORM_ID,
        "approval_note": approval_note(record),
        "started": record.started_at is not None,
        "waves": [
            _wave_view(i, spec, by_index.get(i), record)
            for i, spec in enumerate(record.policy.waves)
        ],
        "excluded": [(exclusion_label(r), n) for r, n in sorted(record.excluded.items())],
    }


def preview_context(record: RolloutRecord, preview: RolloutPreview) -> dict[str, Any]:
    """The dry run as the page lists it: each wave's size and times, its first terminals."""
    specs = record.policy.waves
    waves = []
    for estimate in preview.waves:
        rows = [r for r in preview.rows if r.wave == estimate.wave]
        waves.append(
            {
                "number": estimate.wave + 1,
                "spec": specs[min(estimate.wave, len(specs) - 1)].describe(),
                "estimate": estimate,
                "rows": rows[:PREVIEW_ROWS_PER_WAVE],
                "more": max(0, len(rows) - PREVIEW_ROWS_PER_WAVE),
            }
        )
    return {
        "terminals": len(preview.rows),
        "waves": waves,
        "excluded_counts": [
            (exclusion_label(r), n) for r, n in sorted(preview.exclusion_counts().items())
        ],
        "excluded": [
            (tid, exclusion_label(r)) for tid, r in preview.excluded[:PREVIEW_EXCLUDED_SHOWN]
        ],
        "excluded_more": max(0, len(preview.excluded) - PREVIEW_EXCLUDED_SHOWN),
        "warnings": record.policy.warnings(),
    }


def detail_context(
    record: RolloutRecord, preview: RolloutPreview | None, actor: str, role: Role
) -> dict[str, Any]:
    """Everything the rollout page shows."""
    live = live_context(record, actor, role)
    return {
        **live,
        "live": live,
        "preview": preview_context(record, preview) if preview is not None else None,
        "can_steer": role.permits(Role.SUPPORT),
        "refresh_url": f"{FRAGMENT_PREFIX}rollouts/{record.id}",
        "firmware_path": "/firmware",
        "rollout_path": rollout_path(record.id),
        "waves_text": waves_text(record.policy.waves),
        "reason_max": MAX_REASON,
        "values": {},
        "errors": {},
    }
