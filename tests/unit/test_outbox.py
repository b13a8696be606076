"""The outbox keeps seq monotonic, survives reopening, and drops by its stated policy."""

from __future__ import annotations

from pathlib import Path

from posfleet.agent.outbox import CommandState, EntryKind, Outbox
from posfleet.contract import Channel


def _report(outbox: Outbox, kind: EntryKind = EntryKind.HEALTH) -> int:
    channel = Channel.HEALTH if kind is EntryKind.HEALTH else Channel.EVENT
    return outbox.append(channel, kind, lambda seq: f"{kind.value}:{seq}".encode())


def test_seq_continues_after_a_restart_and_unacknowledged_entries_are_still_there(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "o.db")
    assert [_report(outbox) for _ in range(3)] == [0, 1, 2]
    first = outbox.peek(1)[0]
    outbox.remove(first.id)
    outbox.close()  # as if the agent died before the PUBACKs of seq 1 and 2

    reopened = Outbox(tmp_path / "o.db")
    assert [e.payload for e in reopened.peek(10)] == [b"health:1", b"health:2"]
    assert _report(reopened, EntryKind.EVENT) == 3
    assert reopened.stats().next_seq == 4


def test_command_results_use_up_no_seq(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    _report(outbox)
    outbox.append_plain(Channel.CMD_RESULT, EntryKind.RESULT, b"result")
    assert _report(outbox) == 1
    assert [e.channel for e in outbox.peek(10)] == [
        Channel.HEALTH,
        Channel.CMD_RESULT,
        Channel.HEALTH,
    ]


def test_when_full_oldest_health_goes_first_then_results_and_fault_events_last(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "o.db", max_entries=10)
    _report(outbox, EntryKind.EVENT)  # seq 0
    for _ in range(5):
        _report(outbox)  # seq 1..5
    outbox.append_plain(Channel.CMD_RESULT, EntryKind.RESULT, b"r1")
    for _ in range(3):
        _report(outbox, EntryKind.EVENT)  # seq 6..8
    for _ in range(3):
        _report(outbox)  # seq 9..11: three health reports must go
    stats = outbox.stats()
    assert (stats.pending, stats.dropped_health, stats.dropped_events) == (10, 3, 0)
    payloads = [e.payload for e in outbox.peek(20)]
    assert payloads[:3] == [b"event:0", b"health:4", b"health:5"]

    for _ in range(7):
        _report(outbox, EntryKind.EVENT)
    # The five health reports left go first, then the result, then the oldest event.
    stats = outbox.stats()
    assert stats.dropped_health == 8
    assert stats.dropped_results == 1
    assert stats.dropped_events == 1
    assert b"event:0" not in [e.payload for e in outbox.peek(20)]


def test_command_history_answers_repeats_and_remembers_interrupted_runs(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", command_history=10)
    assert outbox.claim_command("a").state is CommandState.NEW
    assert outbox.claim_command("b").state is CommandState.NEW
    outbox.finish_command("a", b'{"id":"a"}')
    outbox.close()

    reopened = Outbox(tmp_path / "o.db", command_history=10)
    claim = reopened.claim_command("a")
    assert (claim.state, claim.result) == (CommandState.DONE, b'{"id":"a"}')
    assert reopened.interrupted_commands() == ["b"]
    assert reopened.claim_command("b").state is CommandState.INTERRUPTED
    assert [e.channel for e in reopened.peek(5)] == [Channel.CMD_RESULT]


def test_command_history_is_bounded(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", command_history=10)
    for i in range(25):
        outbox.claim_command(f"c{i}")
        outbox.finish_command(f"c{i}", b"{}")
    assert outbox.claim_command("c24").state is CommandState.DONE
    assert outbox.claim_command("c0").state is CommandState.NEW
