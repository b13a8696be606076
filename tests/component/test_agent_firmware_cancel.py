"""A cancel from the centre reaches the agent as the ``firmware_cancel`` command: a real
agent on a simulated terminal over a pty, a real image server, the in-memory broker.

Waiting for its window, the update is dropped (image deleted, a final ``rejected``
status, the terminal never written to, a late offer of the Action refused); installing,
it is not stopped, the command says why, and the update ends as it would have.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from posfleet.agent.firmware_state import FirmwareStateStore
from posfleet.contract import Channel, CommandResult, MaintenanceWindow, UpdateState
from tests.component.test_agent_firmware_updates import Rig, ShiftedClock, rig
from tests.harness import async_wait_for

NIGHT = MaintenanceWindow(start="22:00", end="06:00")


def _cancel(r: Rig, action_id: str, command_id: str) -> None:
    now = r.clock()
    r.uplink.deliver(
        json.dumps(
            {
                "id": command_id,
                "name": "firmware_cancel",
                "args": {"action_id": action_id},
                "issued_by": "user:olga",
                "issued_at": now.isoformat(),
                "expires_at": now.replace(year=now.year + 1).isoformat(),
            }
        ).encode()
    )


async def _result(r: Rig, command_id: str) -> CommandResult:
    def answered() -> CommandResult | None:
        for channel, payload in r.uplink.published:
            if channel is Channel.CMD_RESULT and json.loads(payload)["id"] == command_id:
                return CommandResult.model_validate_json(payload)
        return None

    found = await async_wait_for(answered, timeout=10, description=f"result of {command_id}")
    assert found is not None
    return found


def _saved(r: Rig) -> dict[str, Any]:
    return json.loads((r.state_dir / "firmware" / "updater.json").read_text())  # type: ignore[no-any-return]


async def test_an_update_waiting_for_its_window_is_dropped_and_never_installed(
    tmp_path: Path,
) -> None:
    # 15:00 UTC, the window opens at 22:00: the image is fetched and waits.
    clock = ShiftedClock(datetime(2026, 3, 10, 15, 0, tzinfo=UTC))
    async with rig(tmp_path, clock=clock) as r:
        action = r.offer(version="2.5.0", window=NIGHT, action_id="42.1")
        await async_wait_for(
            lambda: UpdateState.WAITING_WINDOW in r.states(action),
            timeout=20,
            description="the update waits for its window",
        )
        folder = r.state_dir / "firmware"
        assert list(folder.glob("*.img")), "the image is held ahead of the window"

        _cancel(r, "42", "fwcancel-42-a")
        result = await _result(r, "fwcancel-42-a")
        assert result.status == "ok", result
        assert result.output["stopped"] is True and result.output["state"] == "waiting_window"
        final = await r.final(action)
        assert final.state is UpdateState.REJECTED
        assert final.detail == "cancelled by user:olga at the centre"

        # Dropped for good: nothing on disk, nothing under way after a restart either.
        assert not [p.name for p in folder.iterdir() if p.suffix in (".img", ".part", ".etag")]
        saved = _saved(r)
        assert saved["current"] is None and "42" in saved["cancelled"]
        assert FirmwareStateStore(folder).state.current is None

        # A late offer of another attempt (still queued at the broker) is refused.
        late = r.offer(version="2.5.0", window=NIGHT, action_id="42.2", keep_server=True)
        refused = await r.final(late)
        assert refused.state is UpdateState.REJECTED
        assert refused.detail == "cancelled by user:olga at the centre"

        # The window opens; the terminal was never written to. The updater is free for
        # the next update, which installs on its own.
        clock.jump(hours=7, minutes=5)
        slots = r.terminal.firmware
        assert slots.transfer_received == 0 and slots.updates == 0
        assert slots.versions[slots.inactive] == ""
        assert r.terminal.identity.firmware_version == "2.4.1"
        nxt = r.offer(version="2.6.0", window=NIGHT, action_id="43.1")
        assert (await r.final(nxt)).state is UpdateState.SUCCEEDED
        assert r.terminal.identity.firmware_version == "2.6.0"
        assert r.terminal.firmware.updates == 1
        # One download of 2.5.0 before the cancel, one of 2.6.0; the late offer fetched nothing.
        assert [s.status for s in r.server.served] == [200, 200]


async def test_an_update_already_installing_is_not_stopped_and_the_answer_says_why(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, health_window_s=2) as r:
        action = r.offer(version="2.5.0", action_id="7.1")
        await async_wait_for(
            lambda: UpdateState.DOWNLOADING in r.states(action),
            timeout=20,
            description="the download begins",
        )
        # Holding the serial link stops the install at its first word to the terminal,
        # so the cancel surely comes while it is installing; it needs no link itself.
        async with r.agent._serial:
            await async_wait_for(
                lambda: UpdateState.INSTALLING in r.states(action),
                timeout=20,
                description="the install begins",
            )
            _cancel(r, "7", "fwcancel-7-a")
            result = await _result(r, "fwcancel-7-a")
        assert result.status == "failed", result
        assert result.error == "installing: cannot stop safely; it will finish or roll back"
        assert result.output["refused"] is True
        assert result.output["state"] == "installing", result.output

        final = await r.final(action)
        assert final.state is UpdateState.SUCCEEDED, final
        assert r.terminal.identity.firmware_version == "2.5.0"
        assert "7" not in _saved(r)["cancelled"]
