"""What the agent does when the centre cancels a firmware Action (``firmware_cancel``).

Pure decisions, so they are tested without a terminal; the updater carries them out
(:meth:`posfleet.agent.firmware_updater.FirmwareUpdater.cancel`).

An update can be stopped as long as nothing was written to the terminal that it would
boot: while it is accepted, downloading, verifying or waiting for its window (also after
a transfer whose activation was deferred: the inactive slot is never activated then).
Once it is installing or rebooting, stopping would leave a half-written slot or a trial
boot nobody confirms, so the cancel is refused and the update finishes or rolls back.

A cancel covers every attempt of the Action (offer ids ``<id>.<attempt>``,
:func:`~posfleet.contract.offer_belongs_to`), and is remembered, so an offer of it that
arrives late (still queued at the broker) is refused instead of started.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from posfleet.agent.firmware_state import ActionRecord
from posfleet.contract import UpdateState, UpdateStatus, offer_belongs_to

STOPPABLE = frozenset(
    {
        UpdateState.ACCEPTED,
        UpdateState.DOWNLOADING,
        UpdateState.VERIFYING,
        UpdateState.WAITING_WINDOW,
    }
)
"""States in which nothing the terminal would boot has been written yet."""

REFUSAL = "installing: cannot stop safely; it will finish or roll back"


def cancelled_detail(actor: str) -> str:
    """The ``detail`` of the final status of an update cancelled by ``actor``."""
    return f"cancelled by {actor or 'an operator'} at the centre"


class Verdict(enum.Enum):
    """What a cancel does to the update under way."""

    STOP = "stop"
    """The update under way is that Action's and can be stopped."""
    REFUSE = "refuse"
    """The update under way is that Action's, but it is writing to the terminal."""
    ENDED = "ended"
    """That Action's update ended here already."""
    UNKNOWN = "unknown"
    """No update of that Action is under way or remembered (its offer may still come)."""


@dataclass(frozen=True, slots=True)
class CancelDecision:
    """The verdict, with the record or final status it is about."""

    verdict: Verdict
    record: ActionRecord | None = None
    final: UpdateStatus | None = None


def decide_cancel(
    current: ActionRecord | None, finished: Iterable[UpdateStatus], action_id: str
) -> CancelDecision:
    """What a ``firmware_cancel`` of ``action_id`` does, given the updater's state."""
    if current is not None and offer_belongs_to(current.action_id, action_id):
        if current.state in STOPPABLE:
            return CancelDecision(Verdict.STOP, record=current)
        return CancelDecision(Verdict.REFUSE, record=current)
    ended = [s for s in finished if offer_belongs_to(s.action_id, action_id)]
    if ended:
        return CancelDecision(Verdict.ENDED, final=ended[-1])
    return CancelDecision(Verdict.UNKNOWN)


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    """What the agent did about one cancel; becomes the command's result."""

    action_id: str
    stopped: bool
    """True if an update under way was stopped (its files deleted, a final status sent)."""
    refused: bool
    """True if the update is writing to the terminal and goes on."""
    state: str
    """Where the update stood when the cancel came (empty if none was known)."""
    detail: str

    def output(self) -> dict[str, Any]:
        """The ``output`` of the command result."""
        return {
            "action_id": self.action_id,
            "stopped": self.stopped,
            "refused": self.refused,
            "state": self.state,
            "detail": self.detail,
        }


def outcome_of(decision: CancelDecision, action_id: str, actor: str) -> CancelOutcome:
    """The outcome of ``decision`` once carried out (a stop: the update was stopped)."""
    record, final = decision.record, decision.final
    if decision.verdict is Verdict.STOP:
        assert record is not None
        detail = f"stopped {record.action_id} while {record.state.value}: " + cancelled_detail(
            actor
        )
        detail += "; the downloaded image was deleted"
        if record.install_attempts and record.previous_version:
            detail += (
                f"; the terminal keeps running {record.previous_version}, the image in its "
                "inactive slot is never activated"
            )
        return CancelOutcome(action_id, True, False, record.state.value, detail)
    if decision.verdict is Verdict.REFUSE:
        assert record is not None
        return CancelOutcome(action_id, False, True, record.state.value, REFUSAL)
    if decision.verdict is Verdict.ENDED:
        assert final is not None
        return CancelOutcome(
            action_id,
            False,
            False,
            final.state.value,
            f"nothing to stop: {final.action_id} already ended {final.state.value} here",
        )
    return CancelOutcome(
        action_id,
        False,
        False,
        "",
        f"nothing to stop: no update of action {action_id} is under way here; "
        "an offer of it that arrives later is refused",
    )
