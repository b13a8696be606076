"""Rollout states, the four-eyes rule, and each wave's thresholds and soak, on a fake clock."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import pytest

from posfleet.firmware.rollout_machine import (
    COMMANDS,
    DecisionKind,
    RolloutApprovalError,
    RolloutTransitionError,
    allowed_commands,
    decide_wave,
    transition,
)
from posfleet.firmware.rollout_model import (
    ErrorAction,
    RolloutState,
    WaveProgress,
    WaveSpec,
    WaveState,
)

S = RolloutState
T0 = datetime(2026, 3, 10, 21, 0, tzinfo=UTC)
SPEC = WaveSpec(percent=10)  # 95 % to pass, more than 10 % failed stops it, 30 min soak


class FakeClock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = T0

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def test_a_rollout_from_draft_to_finished_with_a_pause() -> None:
    state = S.DRAFT
    for command, expected in [
        ("preview", S.PREVIEWED),
        ("start", S.RUNNING),
        ("pause", S.PAUSED),
        ("resume", S.RUNNING),
        ("finish", S.FINISHED),
        ("rollback", S.ROLLED_BACK),
    ]:
        state = transition(state, command)
        assert state is expected
    assert allowed_commands(state) == ()


@pytest.mark.parametrize(
    ("state", "command", "words"),
    [
        (S.DRAFT, "start", "cannot start a rollout that is draft: it has not been previewed yet"),
        (S.FINISHED, "pause", "cannot pause a rollout that is finished: it has finished"),
        (S.ROLLED_BACK, "resume", "it was rolled back"),
        (S.RUNNING, "resume", "possible now: pause, abort, finish, rollback"),
        (S.PAUSED, "finish", "possible now: resume, abort, rollback"),
        (S.ABORTED, "start", "it was aborted"),
        (S.RUNNING, "preview", "it is running"),
        (S.DRAFT, "rollback", "cannot rollback a rollout that is draft"),
    ],
)
def test_commands_the_state_does_not_allow_are_refused(
    state: RolloutState, command: str, words: str
) -> None:
    with pytest.raises(RolloutTransitionError, match=words) as info:
        transition(state, command)
    assert info.value.state is state and info.value.command == command
    assert not isinstance(info.value, RolloutApprovalError)


def test_unknown_commands_and_states_are_errors_not_crashes() -> None:
    with pytest.raises(RolloutTransitionError, match="unknown rollout command 'go'"):
        transition(S.DRAFT, "go")
    with pytest.raises(RolloutTransitionError, match="unknown rollout state 'done'"):
        transition("done", "finish")
    assert transition("paused", "resume") is S.RUNNING  # names as stored work too


def test_abort_and_rollback_reach_from_where_they_make_sense() -> None:
    for state in (S.DRAFT, S.PREVIEWED, S.AWAITING_APPROVAL, S.RUNNING, S.PAUSED):
        assert transition(state, "abort") is S.ABORTED
    for state in (S.RUNNING, S.PAUSED, S.FINISHED, S.ABORTED):
        assert transition(state, "rollback") is S.ROLLED_BACK
    assert set(allowed_commands(S.DRAFT)) == {"preview", "abort"}
    assert set(COMMANDS) >= {c for s in S for c in allowed_commands(s)}


def test_second_approver_must_not_be_the_creator() -> None:
    rule = functools.partial(transition, require_second_approver=True, created_by="olga")
    state = rule(S.PREVIEWED, "request_approval")
    assert state is S.AWAITING_APPROVAL
    with pytest.raises(RolloutApprovalError, match="olga created this rollout and cannot approve"):
        rule(state, "approve", actor="olga")
    with pytest.raises(RolloutApprovalError, match="needs a second approver before it starts"):
        rule(state, "start", actor="olga")
    assert rule(state, "approve", actor="sam") is S.AWAITING_APPROVAL
    assert rule(state, "start", actor="olga", approved_by="sam") is S.RUNNING


def test_a_start_straight_from_the_preview_needs_an_approval_when_configured() -> None:
    with pytest.raises(RolloutApprovalError, match="request approval, then someone other"):
        transition(S.PREVIEWED, "start", require_second_approver=True, created_by="olga")
    with pytest.raises(RolloutApprovalError, match="approval is by the creator olga"):
        transition(
            S.AWAITING_APPROVAL,
            "start",
            require_second_approver=True,
            created_by="olga",
            approved_by="olga",
        )
    assert transition(S.PREVIEWED, "start", created_by="olga") is S.RUNNING


def test_self_approval_proves_nothing_even_when_not_required() -> None:
    with pytest.raises(RolloutApprovalError, match="cannot approve"):
        transition(S.AWAITING_APPROVAL, "approve", actor="olga", created_by="olga")
    with pytest.raises(RolloutApprovalError, match="approver's name"):
        transition(S.AWAITING_APPROVAL, "approve")


def test_previewing_again_withdraws_the_request_for_approval() -> None:
    assert transition(S.AWAITING_APPROVAL, "preview") is S.PREVIEWED


# ------------------------------------------------------------------------ waves


def _progress(
    total: int, succeeded: int, failed: int, in_progress: int, all_final_at: datetime | None
) -> WaveProgress:
    return WaveProgress(
        wave=1,
        total=total,
        succeeded=succeeded,
        failed=failed,
        in_progress=in_progress,
        started_at=T0,
        all_final_at=all_final_at,
    )


def test_a_wave_soaks_after_its_last_action_then_advances() -> None:
    clock = FakeClock()
    running = decide_wave(_progress(20, 12, 0, 8, None), SPEC, now=clock.now)
    assert running.kind is DecisionKind.KEEP_GOING and running.wave_state is WaveState.RUNNING
    assert running.reason == "8 of 20 terminals in wave 2 open"

    done_at = clock.advance(hours=2)
    done = _progress(20, 19, 1, 0, done_at)
    soaking = decide_wave(done, SPEC, now=clock.advance(minutes=29, seconds=59))
    assert soaking.kind is DecisionKind.KEEP_GOING and soaking.wave_state is WaveState.SOAKING
    assert soaking.soak_until == done_at + timedelta(minutes=30)

    advanced = decide_wave(done, SPEC, now=clock.advance(seconds=1))
    assert advanced.kind is DecisionKind.ADVANCE and advanced.wave_state is WaveState.PASSED
    assert advanced.reason == "19 of 20 terminals in wave 2 succeeded and soaked"


def test_a_wave_without_soak_advances_as_soon_as_it_is_done() -> None:
    spec = WaveSpec(percent=100, soak=timedelta(0))
    decision = decide_wave(_progress(3, 3, 0, 0, T0), spec, now=T0)
    assert decision.kind is DecisionKind.ADVANCE


def test_crossing_the_error_threshold_pauses_at_once_even_mid_wave() -> None:
    decision = decide_wave(_progress(20, 2, 3, 15, None), SPEC, now=T0)
    assert decision.kind is DecisionKind.PAUSE and decision.wave_state is WaveState.FAILED
    assert decision.reason == "3 of 20 terminals in wave 2 failed (15 %, error threshold 10 %)"


def test_exactly_at_the_error_threshold_is_not_over_it() -> None:
    decision = decide_wave(_progress(20, 10, 2, 8, None), SPEC, now=T0)
    assert decision.kind is DecisionKind.KEEP_GOING


def test_a_boot_looping_canary_pauses_the_rollout() -> None:
    canary = WaveProgress(
        wave=0, total=1, succeeded=0, failed=1, in_progress=0, started_at=T0, all_final_at=T0
    )
    decision = decide_wave(canary, WaveSpec(percent=1), now=T0)
    assert decision.kind is DecisionKind.PAUSE
    assert decision.reason == "1 of 1 terminals in wave 1 failed (100 %, error threshold 10 %)"


def test_error_threshold_can_abort_instead() -> None:
    spec = WaveSpec(percent=10, on_error=ErrorAction.ABORT)
    decision = decide_wave(_progress(10, 0, 2, 8, None), spec, now=T0)
    assert decision.kind is DecisionKind.ABORT and "2 of 10" in decision.reason


def test_too_few_successes_pause_once_every_action_ended() -> None:
    spec = WaveSpec(percent=10, error_threshold=0.5)
    decision = decide_wave(_progress(10, 8, 2, 0, T0), spec, now=T0 + timedelta(hours=1))
    assert decision.kind is DecisionKind.PAUSE
    assert decision.reason == "only 8 of 10 terminals in wave 2 succeeded (80 %, needs 95 %)"


def test_terminals_not_offered_yet_keep_the_wave_open() -> None:
    decision = decide_wave(_progress(10, 5, 0, 0, None), SPEC, now=T0)
    assert decision.kind is DecisionKind.KEEP_GOING and "5 of 10" in decision.reason


def test_after_staff_resume_the_thresholds_no_longer_stop_the_wave() -> None:
    failed_wave = _progress(10, 7, 3, 0, T0)
    assert decide_wave(failed_wave, SPEC, now=T0).kind is DecisionKind.PAUSE
    resumed = decide_wave(failed_wave, SPEC, now=T0 + timedelta(minutes=5), accepted=True)
    assert resumed.kind is DecisionKind.KEEP_GOING and resumed.wave_state is WaveState.SOAKING
    later = decide_wave(failed_wave, SPEC, now=T0 + timedelta(minutes=30), accepted=True)
    assert later.kind is DecisionKind.ADVANCE


def test_an_empty_wave_advances_at_once() -> None:
    decision = decide_wave(_progress(0, 0, 0, 0, None), SPEC, now=T0)
    assert decision.kind is DecisionKind.ADVANCE and decision.reason == "wave 2 has no terminals"
