"""The Action state machine (driven with a fake clock), version ordering, push texts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from posfleet.contract import UpdateState
from posfleet.firmware.action_records import parse_wire_action_id, wire_action_id
from posfleet.firmware.action_states import (
    FINAL_STATES,
    ActionSnapshot,
    ActionState,
    ActionTransitionError,
    RetryPolicy,
    on_cancel,
    on_deadline,
    on_offer_published,
    on_report,
)
from posfleet.firmware.push_checks import parse_duration, parse_weekdays, parse_window
from posfleet.firmware.versions import FirmwareVersion, compare_versions

T0 = datetime(2026, 12, 2, 21, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3)


class FakeClock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = T0

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def _action(state: ActionState = ActionState.OFFERED, attempts: int = 1) -> ActionSnapshot:
    return ActionSnapshot(
        action_id=7, state=state, attempts=attempts, deadline=T0 + timedelta(hours=2)
    )


def _report(
    action: ActionSnapshot, state: UpdateState, clock: FakeClock, detail: str = ""
) -> tuple[ActionSnapshot, bool, str, bool]:
    decision = on_report(action, state, detail, reported_at=clock.now, now=clock.now, policy=POLICY)
    if decision.applied:
        action = replace(action, state=decision.state, last_reported_at=clock.now)
    return action, decision.applied, decision.note, decision.retry


def test_a_whole_update_walks_the_agent_states_to_succeeded() -> None:
    clock = FakeClock()
    action = _action(ActionState.CREATED, attempts=0)
    published = on_offer_published(action)
    assert published.applied and published.state is ActionState.OFFERED
    action = replace(action, state=published.state, attempts=1)
    for state in (
        UpdateState.ACCEPTED,
        UpdateState.WAITING_WINDOW,
        UpdateState.DOWNLOADING,
        UpdateState.VERIFYING,
        UpdateState.INSTALLING,
        UpdateState.REBOOTING,
    ):
        clock.advance(minutes=5)
        action, applied, _, _ = _report(action, state, clock)
        assert applied and action.state == state.value
        assert not action.state.final
    clock.advance(minutes=5)
    action, applied, _, _ = _report(action, UpdateState.SUCCEEDED, clock)
    assert applied and action.state is ActionState.SUCCEEDED and action.state.final


@pytest.mark.parametrize(
    ("reported", "final"),
    [
        (UpdateState.REJECTED, ActionState.REJECTED),
        (UpdateState.ROLLED_BACK, ActionState.ROLLED_BACK),
    ],
)
def test_a_refusal_or_a_rollback_is_final_at_once_and_never_retried(
    reported: UpdateState, final: ActionState
) -> None:
    action, applied, _, retry = _report(_action(), reported, FakeClock(), "boot loop")
    assert applied and action.state is final and not retry


def test_a_late_status_after_a_final_state_is_recorded_but_does_not_reopen_it() -> None:
    clock = FakeClock()
    action, _, _, _ = _report(_action(), UpdateState.SUCCEEDED, clock)
    clock.advance(minutes=1)
    decision = on_report(
        action, UpdateState.DOWNLOADING, "", reported_at=clock.now, now=clock.now, policy=POLICY
    )
    assert not decision.applied and decision.state is ActionState.SUCCEEDED
    assert "late" in decision.note
    timed_out = replace(action, state=ActionState.TIMED_OUT)
    decision = on_report(
        timed_out, UpdateState.SUCCEEDED, "", reported_at=clock.now, now=clock.now, policy=POLICY
    )
    assert not decision.applied and decision.state is ActionState.TIMED_OUT


def test_a_redelivered_older_status_does_not_move_the_action_back() -> None:
    clock = FakeClock()
    action, _, _, _ = _report(_action(), UpdateState.DOWNLOADING, clock)
    earlier = clock.now
    clock.advance(minutes=3)
    action, _, _, _ = _report(action, UpdateState.INSTALLING, clock)
    decision = on_report(
        action, UpdateState.DOWNLOADING, "", reported_at=earlier, now=clock.now, policy=POLICY
    )
    assert not decision.applied and decision.state is ActionState.INSTALLING
    assert "stale" in decision.note


def test_transient_failures_are_retried_until_the_cap_then_fail() -> None:
    clock = FakeClock()
    action = _action(attempts=1)
    for attempt in (1, 2):
        action, applied, note, retry = _report(action, UpdateState.FAILED, clock, "timeout")
        assert applied and retry and action.state is ActionState.RETRYING
        assert f"attempt {attempt} of 3" in note
        assert action.state.offer_due
        published = on_offer_published(action)
        action = replace(action, state=published.state, attempts=attempt + 1)
        assert action.state is ActionState.OFFERED
        clock.advance(minutes=10)
    action, applied, note, retry = _report(action, UpdateState.FAILED, clock, "timeout")
    assert action.state is ActionState.FAILED and not retry
    assert "gave up after 3" in note


def test_a_permanent_failure_is_not_retried() -> None:
    action, _, note, retry = _report(
        _action(),
        UpdateState.FAILED,
        FakeClock(),
        "artifact no longer available on the server (410)",
    )
    assert action.state is ActionState.FAILED and not retry and "permanent" in note


def test_a_failure_after_the_deadline_is_not_retried() -> None:
    clock = FakeClock()
    clock.advance(hours=3)
    action, _, note, retry = _report(_action(), UpdateState.FAILED, clock, "reset by peer")
    assert action.state is ActionState.FAILED and not retry and "deadline" in note


def test_an_action_whose_terminal_never_answers_times_out_at_its_deadline() -> None:
    clock = FakeClock()
    action = _action()
    clock.advance(hours=1, minutes=59, seconds=59)
    assert not on_deadline(action, now=clock.now).applied
    clock.advance(seconds=1)
    decision = on_deadline(action, now=clock.now)
    assert decision.applied and decision.state is ActionState.TIMED_OUT
    assert "never answered" in decision.note


def test_a_terminal_that_goes_quiet_mid_update_times_out_saying_where_it_stopped() -> None:
    clock = FakeClock()
    action, _, _, _ = _report(_action(), UpdateState.DOWNLOADING, clock)
    clock.advance(hours=3)
    decision = on_deadline(action, now=clock.now)
    assert decision.state is ActionState.TIMED_OUT and "downloading" in decision.note


def test_final_actions_never_time_out_and_cannot_be_cancelled() -> None:
    clock = FakeClock()
    clock.advance(days=30)
    for state in FINAL_STATES:
        action = _action(state)
        assert not on_deadline(action, now=clock.now).applied
        with pytest.raises(ActionTransitionError, match=f"already {state}"):
            on_cancel(action)


def test_an_open_action_can_be_cancelled_and_a_reconnect_offer_changes_no_state() -> None:
    action = _action(ActionState.DOWNLOADING)
    assert on_cancel(action).state is ActionState.CANCELLED
    again = on_offer_published(action)
    assert not again.applied and again.state is ActionState.DOWNLOADING


def test_the_retry_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="deadline"):
        RetryPolicy(default_deadline=timedelta(0))


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1.9.2", "1.10.0"),
        ("2.0.0-rc.1", "2.0.0-rc.2"),
        ("2.0.0-rc.2", "2.0.0"),
        ("2.0.0-alpha", "2.0.0-alpha.1"),
        ("2.0.0-1", "2.0.0-alpha"),
        ("4.2", "4.2.1"),
        ("R12.3", "R12.4"),
        ("1.2.3", "1.2.4+build.7"),
    ],
)
def test_versions_order_by_semver_precedence(older: str, newer: str) -> None:
    assert compare_versions(older, newer) == -1
    assert compare_versions(newer, older) == 1
    assert FirmwareVersion(older) < FirmwareVersion(newer)


def test_equal_versions_ignore_build_metadata_and_trailing_zeros() -> None:
    assert compare_versions("1.2.0+b1", "1.2.0+b2") == 0
    assert FirmwareVersion("1.2") == FirmwareVersion("1.2.0")
    assert len({FirmwareVersion("1.2"), FirmwareVersion("1.2.0")}) == 1
    with pytest.raises(ValueError, match="empty"):
        FirmwareVersion(" ")


def test_push_texts_read_like_operators_type_them() -> None:
    window = parse_window("22:00-6:00", "mon-fri")
    assert (window.start, window.end, window.weekdays) == ("22:00", "06:00", [0, 1, 2, 3, 4])
    assert parse_window("01:30 - 04:00").weekdays == list(range(7))
    assert parse_weekdays("sat,sun") == [5, 6]
    assert parse_weekdays("fri-mon") == [0, 4, 5, 6]
    assert parse_weekdays("0,2") == [0, 2]
    assert parse_duration("72h") == timedelta(hours=72)
    assert parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("1.5d") == timedelta(hours=36)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_window("tonight"), "HH:MM-HH:MM"),
        (lambda: parse_window("25:00-06:00"), "24-hour clock"),
        (lambda: parse_weekdays("someday"), "not a weekday"),
        (lambda: parse_weekdays(","), "at least one day"),
        (lambda: parse_duration("soon"), "like 90s"),
    ],
)
def test_push_texts_that_make_no_sense_say_what_is_expected(
    call: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    ("detail", "retried"),
    [
        (
            "download refused (403): the token is invalid, expired, replayed or for another "
            "terminal",
            True,
        ),
        ("download gave up after 30 attempts without progress (0 of 10 bytes): timed out", True),
        ("artifact not found on the server (404)", False),
        ("the offer expired at 2026-12-03 06:00 CET before the install could start", False),
        ("no maintenance window (22:00-06:00) opens before the offer expires at 06:00", False),
        (
            "downloaded image's SHA-256 ab does not match the manifest's cd; partial image deleted",
            False,
        ),
    ],
)
def test_failures_the_agent_reports_are_retried_only_when_another_offer_can_help(
    detail: str, retried: bool
) -> None:
    _, _, _, retry = _report(_action(), UpdateState.FAILED, FakeClock(), detail)
    assert retry is retried


def test_a_status_from_an_earlier_attempt_is_recorded_but_not_applied() -> None:
    clock = FakeClock()
    action = _action(ActionState.OFFERED, attempts=2)
    decision = on_report(
        action, UpdateState.FAILED, "x", reported_at=clock.now, now=clock.now, policy=POLICY,
        attempt=1,
    )  # fmt: skip
    assert not decision.applied and "attempt 1" in decision.note
    current = on_report(
        action, UpdateState.ACCEPTED, "", reported_at=clock.now, now=clock.now, policy=POLICY,
        attempt=2,
    )  # fmt: skip
    assert current.applied and current.state is ActionState.ACCEPTED
    assert wire_action_id(17, 2) == "17.2"
    assert parse_wire_action_id("17.2") == (17, 2) and parse_wire_action_id("17") == (17, None)
    assert parse_wire_action_id("17.x") is None and parse_wire_action_id("-1") is None
