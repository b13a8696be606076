"""The Action state machine: one terminal's firmware update, from offer to a final state.

Pure: no I/O and no clock of its own (every decision takes ``now``), so tests drive it
with a fake clock. The store (:mod:`posfleet.firmware.actions`) keeps the state by name
and asks this module what each event does to it.

::

    created --offer published--> offered --fw/status--> accepted / waiting_window /
       ^                                                downloading / verifying /
       |                                                installing / rebooting
       +-- retrying <--failed, attempts left--+              |
                                                              v
            final: succeeded | failed | rejected | rolled_back | timed_out | cancelled

Every open Action has a deadline; past it the sweeper makes it ``timed_out``. A status
that arrives after a final state, or one older than the newest already applied, is
recorded in the history but changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from posfleet.contract import UpdateState
from posfleet.firmware.errors import FirmwareError


class ActionState(StrEnum):
    """Where an Action stands; stored by name."""

    CREATED = "created"
    """Stored; its offer has not been published yet (no broker, or publishing failed)."""
    OFFERED = "offered"
    """The offer is published; the terminal has not answered yet."""
    ACCEPTED = "accepted"
    WAITING_WINDOW = "waiting_window"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    INSTALLING = "installing"
    REBOOTING = "rebooting"
    RETRYING = "retrying"
    """A failure worth another try: a new offer with a new token is due."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    ROLLED_BACK = "rolled_back"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """True once nothing can change this Action any more."""
        return self in FINAL_STATES

    @property
    def offer_due(self) -> bool:
        """True while a (new) offer must be published for this Action."""
        return self in (ActionState.CREATED, ActionState.RETRYING)


FINAL_STATES = frozenset(
    {
        ActionState.SUCCEEDED,
        ActionState.FAILED,
        ActionState.REJECTED,
        ActionState.ROLLED_BACK,
        ActionState.TIMED_OUT,
        ActionState.CANCELLED,
    }
)
OPEN_STATES = frozenset(s for s in ActionState if s not in FINAL_STATES)
"""Every state an Action can still leave: offers are re-published for these."""

_MIRRORED = {
    UpdateState.ACCEPTED: ActionState.ACCEPTED,
    UpdateState.WAITING_WINDOW: ActionState.WAITING_WINDOW,
    UpdateState.DOWNLOADING: ActionState.DOWNLOADING,
    UpdateState.VERIFYING: ActionState.VERIFYING,
    UpdateState.INSTALLING: ActionState.INSTALLING,
    UpdateState.REBOOTING: ActionState.REBOOTING,
    UpdateState.SUCCEEDED: ActionState.SUCCEEDED,
    UpdateState.REJECTED: ActionState.REJECTED,
    UpdateState.ROLLED_BACK: ActionState.ROLLED_BACK,
}

PERMANENT_FAILURE_WORDS = (
    "(404)",
    "(410)",
    "not found",
    "no longer available",
    "cannot install",
    "does not match",
    "wrong image",
    "the offer expire",
    "before the offer expires",
)
"""A ``failed`` detail containing one of these is not retried: the image is no longer
served, what the server has is not the signed image, the terminal cannot install at
all, or the offer expired (no window before the deadline); another offer cannot change
that. Anything else (a network that gave up, a token
that expired while the terminal waited, an install cut short) gets a new offer."""


class ActionTransitionError(FirmwareError):
    """An operator asked for a change the Action's state does not allow (e.g. cancel a
    finished one); ``state`` is where it stands."""

    def __init__(self, action_id: int, state: ActionState, wanted: str) -> None:
        super().__init__(f"firmware action {action_id} is already {state}; cannot {wanted} it")
        self.action_id = action_id
        self.state = state


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a transient failure is offered again, and the default deadline."""

    max_attempts: int = 3
    """Offers per Action, the first included: 3 means two retries."""
    default_deadline: timedelta = timedelta(hours=72)
    """How long a new Action may take, offer to final state, unless the push says otherwise."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.default_deadline <= timedelta(0):
            raise ValueError("default_deadline must be positive")


@dataclass(frozen=True, slots=True)
class ActionSnapshot:
    """What the state machine needs to know about an Action."""

    action_id: int
    state: ActionState
    attempts: int
    """Offers published so far for a fresh attempt (re-publishing on reconnect is not one)."""
    deadline: datetime
    last_reported_at: datetime | None = None
    """The terminal's own ``ts`` of the newest status applied."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What one event does: the new state, and why, for the history."""

    state: ActionState
    applied: bool
    """False when the event is only recorded (late, stale, after a final state)."""
    note: str = ""
    retry: bool = False
    """True when a new offer (new token, next attempt) is now due."""

    @property
    def finished(self) -> bool:
        """True when this event moved the Action into a final state."""
        return self.applied and self.state.final


def on_report(
    action: ActionSnapshot,
    state: UpdateState,
    detail: str,
    *,
    reported_at: datetime,
    now: datetime,
    policy: RetryPolicy,
    attempt: int | None = None,
) -> Decision:
    """What a terminal's ``fw/status`` does to ``action``.

    ``attempt`` is the offer's attempt number the status answers, if it says.
    """
    if action.state.final:
        return Decision(action.state, False, f"late: the action is already {action.state}")
    if attempt is not None and attempt < action.attempts:
        return Decision(
            action.state, False, f"stale: from attempt {attempt}, now on {action.attempts}"
        )
    if action.last_reported_at is not None and reported_at < action.last_reported_at:
        return Decision(action.state, False, "stale: older than the newest status applied")
    if state is UpdateState.FAILED:
        return _on_failure(action, detail, now=now, policy=policy)
    return Decision(_MIRRORED[state], True)


def _on_failure(
    action: ActionSnapshot, detail: str, *, now: datetime, policy: RetryPolicy
) -> Decision:
    lowered = detail.lower()
    if any(word in lowered for word in PERMANENT_FAILURE_WORDS):
        return Decision(ActionState.FAILED, True, "permanent failure: not retried")
    if action.attempts >= policy.max_attempts:
        return Decision(ActionState.FAILED, True, f"gave up after {action.attempts} attempt(s)")
    if now >= action.deadline:
        return Decision(ActionState.FAILED, True, "no time left before the deadline to retry")
    return Decision(
        ActionState.RETRYING,
        True,
        f"attempt {action.attempts} of {policy.max_attempts} failed; offering again",
        retry=True,
    )


def on_offer_published(action: ActionSnapshot) -> Decision:
    """The offer went out: a due Action becomes ``offered``; any other stays as it is."""
    if action.state.final:
        return Decision(action.state, False, f"not offered: the action is {action.state}")
    if action.state.offer_due:
        return Decision(ActionState.OFFERED, True, f"attempt {action.attempts + 1}")
    return Decision(action.state, False, "offered again (the terminal reconnected)")


def on_deadline(action: ActionSnapshot, *, now: datetime) -> Decision:
    """The sweeper's check: an open Action past its deadline is ``timed_out``."""
    if action.state.final or now < action.deadline:
        return Decision(action.state, False)
    if action.last_reported_at is None:
        note = "the terminal never answered before the deadline"
    else:
        note = f"no final answer before the deadline; last state {action.state}"
    return Decision(ActionState.TIMED_OUT, True, note)


def on_cancel(action: ActionSnapshot) -> Decision:
    """An operator cancels: any open Action becomes ``cancelled``."""
    if action.state.final:
        raise ActionTransitionError(action.action_id, action.state, "cancel")
    return Decision(ActionState.CANCELLED, True, "cancelled by an operator")
