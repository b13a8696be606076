"""Runners of the documented ``posfleet rollout ...`` commands (see ``RUNNERS`` in
:mod:`tests.e2e.test_documented_commands`).

The README's rollout block is one session: create, preview, approve, start, watch,
pause, resume, abort, roll back, list, show. Every runner gets a fresh workspace, so it
makes what the commands before it would have left: a fleet (terminals of the documented
model on an older version, one already on the new one), the documented artifact, and the
rollout in the state the command needs, made in-process through the operations the CLI
calls, or by running the block's own ``create`` as the console script. Then it runs its
command and checks what the person typing it would see: the output, and the rollout in
the store (state, waves, who and why in its history and the audit log).
"""

from __future__ import annotations

import asyncio
import getpass
from pathlib import Path
from typing import Any

from posfleet.dashboard.rollout_service import RolloutService
from posfleet.firmware.rollout_records import RolloutRecord
from posfleet.firmware.rollouts import get_rollout
from posfleet.store import upgrade_engine
from posfleet.store.accounts import Role, list_audit
from tests.component.firmware_rows import add_artifact, add_terminal, signed_manifest
from tests.harness.command_workspace import Workspace
from tests.harness.doc_commands import DocumentedCommand, commands_in

REPO = Path(__file__).resolve().parents[2]
TERMINALS = 20
OLD_VERSION = "5.2.1"
ELSEWHERE = "user:olga"
"""The creator when a command must come from someone else (approve)."""
SETUP = {"reason_code": "security_fix", "reason": "doc setup"}


def _option(command: DocumentedCommand, name: str) -> str:
    words = list(command.argv)
    assert name in words, f"{command.source}: {command.text!r} has no {name}"
    return words[words.index(name) + 1]


def _documented(command: DocumentedCommand, verb: str) -> DocumentedCommand:
    """``posfleet rollout VERB`` as documented in the same file as ``command``."""
    name = command.source.rsplit(":", 1)[0]
    for found in commands_in((REPO / name).read_text(encoding="utf-8"), name):
        if found.argv[:3] == ("posfleet", "rollout", verb) and found.not_run_reason is None:
            return found
    raise AssertionError(f"{name} runs no 'posfleet rollout {verb}' for {command.text!r}")


def _me() -> str:
    """The actor the CLI records for the person running it."""
    return f"cli:{getpass.getuser()}"


def _create_body(command: DocumentedCommand) -> dict[str, Any]:
    """The API body of the block's documented ``create`` (its name, artifact and model)."""
    create = _documented(command, "create")
    return {
        "name": create.argv[3],
        "artifact": _option(create, "--artifact"),
        "target": {"models": _option(create, "--models").split(",")},
        "policy": {"waves": [{"percent": 10}, {"percent": 50}, {"percent": 100}]},
        **SETUP,
    }


async def _with_fleet(command: DocumentedCommand, ws: Workspace) -> None:
    """The documented artifact, the release before it (signed to allow a downgrade), and
    terminals of the documented model on that older release, plus one already current."""
    create = _documented(command, "create")
    name, _, version = _option(create, "--artifact").partition("@")
    assert name == "pos-os", "the block rolls out another firmware line than the fixtures"
    model = _option(create, "--models").split(",")[0]
    ws.var_dir.mkdir(parents=True, exist_ok=True)
    async with ws.engine() as engine:
        await upgrade_engine(engine)
        await add_artifact(engine, signed_manifest(OLD_VERSION, allow_downgrade=True))
        await add_artifact(engine, signed_manifest(version, models=(model,)))
        for index in range(TERMINALS):
            await add_terminal(engine, f"DOC-R-{index:03d}", model=model, firmware=OLD_VERSION)
        await add_terminal(engine, "DOC-R-CURRENT", model=model, firmware=version)


async def _rollout(
    command: DocumentedCommand,
    ws: Workspace,
    *,
    steps: tuple[str, ...],
    creator: str | None = None,
    **policy: Any,
) -> int:
    """A rollout of the block's create, moved by ``steps`` (``preview``, ``start``, ...);
    its id is what the documented ``ID`` stands for."""
    await _with_fleet(command, ws)
    body = _create_body(command)
    body["policy"] = {**body["policy"], **policy}
    async with ws.engine() as engine:
        service = RolloutService(engine, actor=creator or _me(), role=Role.OPS)
        created = await service.create(body)
        for step in steps:
            if step == "preview":
                await service.preview(created.id, store=True)
            else:
                await service.command(created.id, step, SETUP)
    ws.substitutions["ID"] = str(created.id)
    return created.id


async def _record(ws: Workspace, rollout_id: int) -> RolloutRecord:
    async with ws.engine() as engine, engine.connect() as conn:
        return await get_rollout(conn, rollout_id)


async def _audited(ws: Workspace, action: str, rollout_id: int) -> list[str]:
    """Who the audit log says did ``action`` to the rollout, with the reason."""
    async with ws.engine() as engine, engine.connect() as conn:
        entries = await list_audit(conn, limit=500)
    return [f"{e.actor}: {e.reason}" for e in entries if (e.action, e.target) == (
        action, f"rollout:{rollout_id}")]  # fmt: skip


def _last_transition(record: RolloutRecord) -> tuple[str, str, str, str]:
    t = record.transitions[-1]
    return t.command, t.actor, t.reason_code, t.reason_text


# -- the runners ----------------------------------------------------------------------------


async def run_rollout_create(command: DocumentedCommand, ws: Workspace) -> None:
    """A draft of the artifact for the model, with the documented waves and window."""
    await _with_fleet(command, ws)
    out = await ws.run(command)
    name, artifact = command.argv[3], _option(command, "--artifact")
    model = _option(command, "--models")
    assert f"rollout #1 {name!r} created (draft): {artifact} to models {model}" in out, out
    assert "next: posfleet rollout preview 1" in out, out
    record = await _record(ws, 1)
    waves = [f"{w.percent:g}%" for w in record.policy.waves]
    assert ",".join(waves) == _option(command, "--waves")
    start, end = _option(command, "--window").split("-")
    assert (record.policy.window.start, record.policy.window.end) == (start, end)
    assert record.policy.window.weekdays == [0, 1, 2, 3, 4]  # mon-fri
    assert (record.reason_code, record.reason_text) == (
        _option(command, "--reason-code"),
        _option(command, "--reason"),
    )
    assert await _audited(ws, "rollout.create", 1) == [f"{_me()}: {_option(command, '--reason')}"]


async def run_rollout_preview(command: DocumentedCommand, ws: Workspace) -> None:
    """Each wave's terminals and times, the excluded terminal and why; now previewed."""
    rollout_id = await _rollout(command, ws, steps=())
    out = await ws.run(command)
    assert f"{TERMINALS} terminal(s) in 3 wave(s), 1 excluded" in out, out
    assert "wave 1 (10 %): 2 terminal(s)" in out and "wave 3 (100 %): 10 terminal(s)" in out
    assert "DOC-R-CURRENT: already_current" in out, out
    assert f"next: posfleet rollout start {rollout_id}" in out, out
    assert (await _record(ws, rollout_id)).state.value == "previewed"


async def run_rollout_approve(command: DocumentedCommand, ws: Workspace) -> None:
    """Someone else's rollout that needs a second approver: approved by the one typing."""
    rollout_id = await _rollout(
        command, ws, steps=("preview",), creator=ELSEWHERE, require_second_approver=True
    )
    out = await ws.run(command)
    assert f"rollout #{rollout_id}" in out and "approved: now awaiting_approval" in out, out
    record = await _record(ws, rollout_id)
    assert record.approved_by == _me()
    assert _last_transition(record) == (
        "approve",
        _me(),
        _option(command, "--reason-code"),
        _option(command, "--reason"),
    )


async def run_rollout_start(command: DocumentedCommand, ws: Workspace) -> None:
    """Running, with its targets placed in their waves and the excluded one left out."""
    rollout_id = await _rollout(command, ws, steps=("preview",))
    out = await ws.run(command)
    assert "started: now running" in out, out
    record = await _record(ws, rollout_id)
    assert record.state.value == "running"
    assert [w.planned for w in record.waves] == [2, 8, 10]
    assert record.excluded == {"already_current": 1}
    assert await _audited(ws, "rollout.start", rollout_id) == [
        f"{_me()}: {_option(command, '--reason')}"
    ]


async def run_rollout_watch(command: DocumentedCommand, ws: Workspace) -> None:
    """Shows the running rollout's waves, follows it when someone aborts it, and ends by
    itself once it has ended (into a pipe, each changed picture is printed once)."""
    rollout_id = await _rollout(command, ws, steps=("preview", "start"))
    process = await asyncio.create_subprocess_exec(
        *ws.argv(command),
        cwd=ws.work,
        env=ws.env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    seen: list[str] = []
    try:
        while not any(" running " in line for line in seen):
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line, f"watch ended before it showed the running rollout: {seen}"
            seen.append(line.decode(errors="replace"))
        async with ws.engine() as engine:
            other = RolloutService(engine, actor=ELSEWHERE, role=Role.OPS)
            await other.command(rollout_id, "abort", {"reason_code": "bug_fix", "reason": "x"})
        rest, _ = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    out = "".join(seen) + rest.decode(errors="replace")
    assert process.returncode == 0 and "Traceback" not in out, out
    first, _, after = out.partition(" running ")
    assert f"rollout #{rollout_id}" in first and "WAVE" in after and "10 % (2)" in after, out
    assert " aborted " in after, f"watch did not follow the abort: {out}"


async def run_rollout_pause(command: DocumentedCommand, ws: Workspace) -> None:
    """Paused, saying by whom and why."""
    rollout_id = await _rollout(command, ws, steps=("preview", "start"))
    out = await ws.run(command)
    assert "paused: now paused" in out, out
    record = await _record(ws, rollout_id)
    assert record.state.value == "paused"
    assert record.paused_reason == f"paused by {_me()}: {_option(command, '--reason')}"


async def run_rollout_resume(command: DocumentedCommand, ws: Workspace) -> None:
    """Running again."""
    rollout_id = await _rollout(command, ws, steps=("preview", "start", "pause"))
    out = await ws.run(command)
    assert "resumed: now running" in out, out
    record = await _record(ws, rollout_id)
    assert record.state.value == "running" and record.paused_reason is None
    assert _last_transition(record)[:2] == ("resume", _me())


async def run_rollout_abort(command: DocumentedCommand, ws: Workspace) -> None:
    """Aborted for good."""
    rollout_id = await _rollout(command, ws, steps=("preview", "start"))
    out = await ws.run(command)
    assert "aborted: now aborted" in out, out
    record = await _record(ws, rollout_id)
    assert record.state.value == "aborted" and record.finished_at is not None


async def run_rollout_rollback(command: DocumentedCommand, ws: Workspace) -> None:
    """Rolled back to the release before, the one signed to allow the downgrade."""
    rollout_id = await _rollout(command, ws, steps=("preview", "start"))
    out = await ws.run(command)
    assert "rolled back: now rolled_back" in out, out
    record = await _record(ws, rollout_id)
    assert record.state.value == "rolled_back"
    assert record.rollback_artifact == f"pos-os@{OLD_VERSION}"
    assert _last_transition(record)[2:] == ("rollback", _option(command, "--reason"))


async def run_rollout_list(command: DocumentedCommand, ws: Workspace) -> None:
    """Every rollout, newest first, with its firmware and state."""
    first = await _rollout(command, ws, steps=("preview", "start"))
    async with ws.engine() as engine:
        service = RolloutService(engine, actor=_me(), role=Role.OPS)
        second = (await service.create({**_create_body(command), "name": "second"})).id
    out = await ws.run(command)
    lines = [line for line in out.splitlines() if line.startswith("#")]
    assert [line.split()[0] for line in lines] == [f"#{second}", f"#{first}"], out
    assert "draft" in lines[0] and "running" in lines[1] and "pos-os@" in lines[1], out


async def run_rollout_show(command: DocumentedCommand, ws: Workspace) -> None:
    """The rollout's target, waves and its history with who did what and why."""
    rollout_id = await _rollout(command, ws, steps=("preview", "start"))
    out = await ws.run(command)
    assert f"rollout #{rollout_id}" in out and "running" in out, out
    assert "target: models V400m" in out, out
    assert "history:" in out and f"start previewed -> running by {_me()}" in out, out
    assert "10 % (2)" in out and "50 % (8)" in out and "100 % (10)" in out, out


RUNNERS = {
    "posfleet rollout create": run_rollout_create,
    "posfleet rollout preview": run_rollout_preview,
    "posfleet rollout approve": run_rollout_approve,
    "posfleet rollout start": run_rollout_start,
    "posfleet rollout watch": run_rollout_watch,
    "posfleet rollout pause": run_rollout_pause,
    "posfleet rollout resume": run_rollout_resume,
    "posfleet rollout abort": run_rollout_abort,
    "posfleet rollout rollback": run_rollout_rollback,
    "posfleet rollout list": run_rollout_list,
    "posfleet rollout show": run_rollout_show,
}
"""The rollout part of ``RUNNERS`` in :mod:`tests.e2e.test_documented_commands`."""
