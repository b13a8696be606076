"""The rollout state machine and the per-wave decisions; pure, the time is passed in.

::

    draft --preview--> previewed --request_approval--> awaiting_approval
                         |   ^ preview                    |  approve (stays; records it)
                         |   +----------------------------+
                         +--start (no second approver needed)--+
                                                               v
               awaiting_approval --start (approved, if needed)--> running
    running --pause--> paused --resume--> running       running --finish--> finished
    draft | previewed | awaiting_approval | running | paused --abort--> aborted
    running | paused | finished | aborted --rollback--> rolled_back

The approval rule is part of the transitions: when the policy asks for a second approver,
``approve`` must come from someone other than the creator and ``start`` is refused until
such an approval is recorded (:class:`RolloutApprovalError`, which the API answers with
403). Roles (who may run a command at all) are checked by the store, which knows them.

:func:`decide_wave` reads one wave's progress against its :class:`WaveSpec`: keep going,
advance (the soak is over), pause or abort.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from posfleet.firmware.rollout_model import (
    ErrorAction,
    RolloutError,
    RolloutState,
    WaveProgress,
    WaveSpec,
    WaveState,
)

S = RolloutState

COMMANDS = (
    "preview",
    "request_approval",
    "approve",
    "start",
    "pause",
    "resume",
    "abort",
    "finish",
    "rollback",
)
"""Every command :func:`transition` knows, in the order a rollout usually sees them."""

_TABLE: dict[tuple[RolloutState, str], RolloutState] = {
    (S.DRAFT, "preview"): S.PREVIEWED,
    (S.PREVIEWED, "preview"): S.PREVIEWED,
    (S.AWAITING_APPROVAL, "preview"): S.PREVIEWED,
    (S.PREVIEWED, "request_approval"): S.AWAITING_APPROVAL,
    (S.AWAITING_APPROVAL, "approve"): S.AWAITING_APPROVAL,
    (S.PREVIEWED, "start"): S.RUNNING,
    (S.AWAITING_APPROVAL, "start"): S.RUNNING,
    (S.RUNNING, "pause"): S.PAUSED,
    (S.PAUSED, "resume"): S.RUNNING,
    (S.RUNNING, "finish"): S.FINISHED,
    (S.DRAFT, "abort"): S.ABORTED,
    (S.PREVIEWED, "abort"): S.ABORTED,
    (S.AWAITING_APPROVAL, "abort"): S.ABORTED,
    (S.RUNNING, "abort"): S.ABORTED,
    (S.PAUSED, "abort"): S.ABORTED,
    (S.RUNNING, "rollback"): S.ROLLED_BACK,
    (S.PAUSED, "rollback"): S.ROLLED_BACK,
    (S.FINISHED, "rollback"): S.ROLLED_BACK,
    (S.ABORTED, "rollback"): S.ROLLED_BACK,
}

_WHY_NOT: dict[RolloutState, str] = {
    S.DRAFT: "it has not been previewed yet",
    S.PREVIEWED: "it has not started",
    S.AWAITING_APPROVAL: "it waits for approval and a start",
    S.RUNNING: "it is running",
    S.PAUSED: "it is paused",
    S.FINISHED: "it has finished",
    S.ABORTED: "it was aborted",
    S.ROLLED_BACK: "it was rolled back",
}


class RolloutTransitionError(RolloutError):
    """A command that the rollout's state does not allow; ``state`` and ``command`` say which.

    The store answers it with 409.
    """

    def __init__(self, message: str, *, state: RolloutState, command: str) -> None:
        super().__init__(message)
        self.state = state
        self.command = command


class RolloutApprovalError(RolloutTransitionError):
    """The four-eyes rule refused the command (self-approval, a start without approval).

    The store answers it with 403 and audits the refusal.
    """


def allowed_commands(state: RolloutState | str) -> tuple[str, ...]:
    """The commands :func:`transition` accepts in ``state`` (for buttons and help texts)."""
    state = RolloutState(state)
    return tuple(c for c in COMMANDS if (state, c) in _TABLE)


def transition(
    state: RolloutState | str,
    command: str,
    *,
    require_second_approver: bool = False,
    actor: str | None = None,
    created_by: str | None = None,
    approved_by: str | None = None,
) -> RolloutState:
    """The state ``command`` leads to from ``state``; raises when it is not allowed.

    ``actor`` is who issues the command, ``created_by`` the rollout's creator and
    ``approved_by`` the approval recorded so far (None: none). With
    ``require_second_approver``, ``approve`` by the creator and ``start`` without an
    approval raise :class:`RolloutApprovalError`; an approval by the creator is refused
    even when none is required (it would prove nothing).
    """
    try:
        state = RolloutState(state)
    except ValueError:
        raise RolloutTransitionError(
            f"unknown rollout state {state!r}", state=RolloutState.DRAFT, command=command
        ) from None
    if command not in COMMANDS:
        raise RolloutTransitionError(
            f"unknown rollout command {command!r}; known: {', '.join(COMMANDS)}",
            state=state,
            command=command,
        )
    target = _TABLE.get((state, command))
    if target is None:
        allowed = allowed_commands(state)
        hint = f" (possible now: {', '.join(allowed)})" if allowed else ""
        raise RolloutTransitionError(
            f"cannot {command.replace('_', ' ')} a rollout that is {state.value}: "
            f"{_WHY_NOT[state]}{hint}",
            state=state,
            command=command,
        )
    if command == "approve":
        if actor is None:
            raise RolloutApprovalError(
                "an approval needs the approver's name", state=state, command=command
            )
        if created_by is not None and actor == created_by:
            raise RolloutApprovalError(
                f"{actor} created this rollout and cannot approve it; a second person must approve",
                state=state,
                command=command,
            )
    if command == "start" and require_second_approver:
        if approved_by is None:
            step = "request approval, then " if state is S.PREVIEWED else ""
            raise RolloutApprovalError(
                "this rollout needs a second approver before it starts: "
                f"{step}someone other than its creator must approve it",
                state=state,
                command=command,
            )
        if created_by is not None and approved_by == created_by:
            raise RolloutApprovalError(
                f"the recorded approval is by the creator {approved_by}; "
                "a second person must approve",
                state=state,
                command=command,
            )
    return target


# ------------------------------------------------------------------- wave decisions


class DecisionKind(StrEnum):
    """What the runner does with a wave next."""

    KEEP_GOING = "keep_going"
    ADVANCE = "advance"
    PAUSE = "pause"
    ABORT = "abort"


@dataclass(frozen=True, slots=True)
class WaveDecision:
    """:func:`decide_wave`'s answer.

    ``reason`` is a sentence for pauses and aborts (and the soak, while soaking);
    ``soak_until`` is set once every Action is final and the wave met its success
    threshold: the next wave (and the health gate) waits until then.
    """

    kind: DecisionKind
    reason: str = ""
    soak_until: datetime | None = None

    @property
    def wave_state(self) -> WaveState:
        """The wave's state this decision implies."""
        if self.kind is DecisionKind.ADVANCE:
            return WaveState.PASSED
        if self.kind in (DecisionKind.PAUSE, DecisionKind.ABORT):
            return WaveState.FAILED
        return WaveState.SOAKING if self.soak_until is not None else WaveState.RUNNING

    @classmethod
    def keep_going(cls, reason: str = "", soak_until: datetime | None = None) -> WaveDecision:
        """Nothing to decide yet."""
        return cls(DecisionKind.KEEP_GOING, reason, soak_until)

    @classmethod
    def advance(cls, reason: str = "") -> WaveDecision:
        """The wave is done: start the next one (after the health gate)."""
        return cls(DecisionKind.ADVANCE, reason)

    @classmethod
    def pause(cls, reason: str) -> WaveDecision:
        """Stop offering and wait for staff."""
        return cls(DecisionKind.PAUSE, reason)

    @classmethod
    def abort(cls, reason: str) -> WaveDecision:
        """Stop the rollout for good."""
        return cls(DecisionKind.ABORT, reason)


def _pct(share: float) -> str:
    return f"{share * 100:.0f} %" if share * 100 == round(share * 100) else f"{share * 100:.1f} %"


def decide_wave(
    progress: WaveProgress, spec: WaveSpec, *, now: datetime, accepted: bool = False
) -> WaveDecision:
    """Whether wave ``progress`` goes on, advances, pauses or aborts, at ``now``.

    - more than ``error_threshold`` of the wave failed: pause (or abort) at once, even
      while other Actions are still under way;
    - Actions still open (or not offered): keep going;
    - all final, fewer than ``success_threshold`` succeeded: pause;
    - all final and enough succeeded: soak until ``all_final_at + soak``, then advance.

    An empty wave advances at once. ``accepted``: staff resumed the rollout after this
    wave stopped it, so its thresholds no longer stop it (it still waits for its Actions
    and its soak).
    """
    label = f"wave {progress.wave + 1}"
    total = progress.total
    if total == 0:
        return WaveDecision.advance(f"{label} has no terminals")
    if not accepted:
        failed_share = progress.failed / total
        if progress.failed and failed_share > spec.error_threshold:
            reason = (
                f"{progress.failed} of {total} terminals in {label} failed "
                f"({_pct(failed_share)}, error threshold {_pct(spec.error_threshold)})"
            )
            if spec.on_error is ErrorAction.ABORT:
                return WaveDecision.abort(reason)
            return WaveDecision.pause(reason)
    if progress.final < total or progress.all_final_at is None:
        open_count = total - progress.final
        return WaveDecision.keep_going(f"{open_count} of {total} terminals in {label} open")
    success_share = progress.succeeded / total
    if not accepted and success_share < spec.success_threshold:
        return WaveDecision.pause(
            f"only {progress.succeeded} of {total} terminals in {label} succeeded "
            f"({_pct(success_share)}, needs {_pct(spec.success_threshold)})"
        )
    soak_until = progress.all_final_at + spec.soak
    if now < soak_until:
        return WaveDecision.keep_going(
            f"{label} soaks until {soak_until.isoformat(timespec='seconds')}", soak_until
        )
    return WaveDecision.advance(
        f"{progress.succeeded} of {total} terminals in {label} succeeded and soaked"
    )
