"""Firmware Actions end to end: the real central service, the real broker, real agents on
simulated terminals (ptys), pushed the way ops pushes (API and ``posfleet firmware``).

Covered here, one user path per test:

- an offline terminal that never comes back reaches ``timed_out`` at its deadline and the
  counters show it, while one that reconnects after the broker lost its queued messages
  still gets its offer (re-published on reconnect) and updates;
- one terminal updates all the way (download, slot B, reboot, health window, confirm)
  and the registry shows the new version, while a boot-looping image is rolled back by
  itself and its Action ends ``rolled_back`` with the reason;
- a terminal in Asia/Shanghai and one in Europe/Berlin, offered the same window at the same
  instant, each install only inside that window in their own local time: the one whose
  window is open now updates, the other fetches the image ahead and waits, saying when
  its window opens; cancelled, it drops that update (the agent's state and the Action's
  history say so), and a new push with a window open in Berlin installs it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from posfleet.agent.runner import run_agent
from posfleet.agent.settings import AgentSettings
from posfleet.central.cli import main
from posfleet.contract import SignedManifest
from posfleet.firmware.artifact_store import ArtifactStore
from posfleet.firmware.artifacts import Artifacts
from posfleet.simulator import SimulatedTerminal, serve_pty
from posfleet.simulator.firmware_images import make_image
from tests.harness import PrivateBroker, async_wait_for
from tests.harness.central_service import CentralUnderTest, start_central
from tests.harness.firmware_release import ReleaseKey, release_key, trusting

IMAGE_SIZE = 96 * 1024
ANY_TIME = "00:00-00:00"
"""A window as long as the day: these tests are not about windows."""


@dataclass
class FieldTerminal:
    """A simulated terminal and the agent on it, which the test switches on and off."""

    terminal_id: str
    hardware: SimulatedTerminal
    settings: AgentSettings
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def power_on(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(run_agent(self.settings, self._stop))

    async def power_off(self) -> None:
        if self._task is not None:
            self._stop.set()
            await self._task
            self._task = None


@asynccontextmanager
async def field_terminals(
    broker: PrivateBroker,
    tmp_path: Path,
    key: ReleaseKey,
    *names: str,
    timezones: Mapping[str, str] | None = None,
) -> AsyncIterator[dict[str, FieldTerminal]]:
    """Terminals with their agents running, trusting ``key``; switched off at the end.

    ``timezones`` gives a terminal (by name) the IANA zone of its site (default UTC).
    """
    found: dict[str, FieldTerminal] = {}
    async with AsyncExitStack() as stack:
        for n, name in enumerate(names):
            terminal_id = f"{name}-{tmp_path.name[-6:]}"
            creds = broker.provision_terminal(terminal_id)
            hardware = SimulatedTerminal(f"SN-{terminal_id}", seed=20 + n, transactions_per_hour=0)
            port = await stack.enter_async_context(serve_pty(hardware))
            settings = AgentSettings(
                terminal_id=terminal_id,
                broker_url=broker.url,
                password=creds.password,
                serial_url=port,
                health_interval_s=2,
                fault_poll_s=0.5,
                reconnect_max_s=2,
                state_dir=tmp_path / f"agent-{name}",
                timezone=(timezones or {}).get(name, "UTC"),
                firmware_trusted_keys={key.key_id: key.public_path},
                firmware_health_window_s=1,
                firmware_health_poll_s=0.2,
                firmware_boot_timeout_s=30,
                firmware_retry_min_s=0.1,
                firmware_retry_max_s=0.5,
                firmware_window_recheck_s=0.2,
            )
            spot = FieldTerminal(terminal_id, hardware, settings)
            stack.push_async_callback(spot.power_off)
            spot.power_on()
            found[name] = spot
        yield found


@asynccontextmanager
async def central_for(
    broker: PrivateBroker, tmp_path: Path, key: ReleaseKey
) -> AsyncIterator[tuple[CentralUnderTest, Artifacts]]:
    """The central service, and its artifacts (stored the way an upload stores them)."""
    var = tmp_path / "central"
    async with start_central(broker, var, f"sqlite+aiosqlite:///{tmp_path / 'central.db'}") as c:
        yield c, Artifacts(c.service.engine, ArtifactStore(var / "artifacts"), trusting(key))


async def upload(
    artifacts: Artifacts, key: ReleaseKey, image: bytes, version: str, model: str
) -> SignedManifest:
    signed = key.sign(image, version=version, models=(model,))

    async def chunks() -> AsyncIterator[bytes]:
        yield image

    await artifacts.upload(signed, chunks(), uploaded_by="user:olga")
    return signed


async def registered(central: CentralUnderTest, spot: FieldTerminal, *, online: bool) -> None:
    """Wait until the registry knows the terminal's inventory and presence."""

    async def known() -> bool:
        item = (await central.terminals()).get(spot.terminal_id)
        return bool(item and item["firmware_version"] and item["online"] is online)

    await async_wait_for(known, timeout=30, description=f"{spot.terminal_id} registered")


async def action_of(central: CentralUnderTest, action_id: int) -> dict[str, Any]:
    return await central.get_json(f"/api/v1/firmware/actions/{action_id}")  # type: ignore[no-any-return]


async def ends(central: CentralUnderTest, action_id: int, within_s: float = 90) -> dict[str, Any]:
    """Wait for the Action's final state; return it with its history."""

    async def final() -> dict[str, Any] | None:
        shown = await action_of(central, action_id)
        done = shown["action"]["state"] in ("succeeded", "failed", "rejected", "rolled_back",
                                            "timed_out", "cancelled")  # fmt: skip
        return shown if done else None

    found = await async_wait_for(final, timeout=within_s, description=f"action {action_id} ends")
    assert found is not None
    return dict(found)


async def push(central: CentralUnderTest, **body: Any) -> dict[str, Any]:
    async with central.http.post(
        central.service.url + "/api/v1/firmware/actions",
        json=body,
        headers={"Authorization": f"Bearer {central.token}"},
    ) as response:
        answer = await response.json()
        assert response.status == 201, answer
        return answer  # type: ignore[no-any-return]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_offline_terminals_time_out_at_their_deadline_or_get_their_offer_on_reconnect(
    fresh_broker: PrivateBroker, tmp_path: Path
) -> None:
    key = release_key(tmp_path / "keys", "rel-e2e")
    async with (
        central_for(fresh_broker, tmp_path, key) as (central, artifacts),
        field_terminals(fresh_broker, tmp_path, key, "GONE", "BACK") as fleet,
    ):
        gone, back = fleet["GONE"], fleet["BACK"]
        for spot in (gone, back):
            await registered(central, spot, online=True)
            await spot.power_off()
            await registered(central, spot, online=False)
        model = back.hardware.identity.model
        await upload(
            artifacts, key, make_image("2.5.0", IMAGE_SIZE, models=(model,)), "2.5.0", model
        )

        quiet = await push(
            central, artifact="pos-os@2.5.0", terminal_ids=[gone.terminal_id], deadline="6s"
        )
        away = await push(
            central, artifact="pos-os@2.5.0", terminal_ids=[back.terminal_id], window=ANY_TIME
        )
        assert quiet["offered"] == 1 and away["offered"] == 1
        quiet_id, away_id = quiet["created"][0]["id"], away["created"][0]["id"]

        # The broker loses what it had queued for the terminal that is away (a restart
        # without its data): only the offer re-published on reconnect can reach it now.
        fresh_broker.stop()
        (fresh_broker.process.work_dir / "data" / "mosquitto.db").unlink(missing_ok=True)
        fresh_broker.start()
        await central.service.ingest.wait_connected(30)

        # The terminal that never answers: timed out at its deadline, by itself.
        timed_out = await ends(central, quiet_id, within_s=30)
        action = timed_out["action"]
        assert action["state"] == "timed_out"
        assert "never answered" in action["detail"]
        late_by = (_at(action["finished_at"]) - _at(action["deadline"])).total_seconds()
        assert 0 <= late_by < 3, late_by

        back.power_on()
        updated = await ends(central, away_id)
        assert updated["action"]["state"] == "succeeded", updated
        notes = [e["note"] for e in updated["events"] if e["source"] == "centre"]
        assert "offered again (the terminal reconnected)" in notes
        terminal_states = [e["state"] for e in updated["events"] if e["source"] == "terminal"]
        assert terminal_states[0] == "accepted" and terminal_states[-1] == "succeeded"

        summary = await central.get_json("/api/v1/firmware/actions/summary")
        assert summary["by_state"]["timed_out"] == 1
        assert summary["by_state"]["succeeded"] == 1
        assert summary["open"] == 0
        assert (await central.terminals())[back.terminal_id]["firmware_version"] == "2.5.0"
        assert (await central.terminals())[gone.terminal_id]["firmware_version"] == "2.4.1"


@pytest.fixture
def api_token_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.delenv("POSFLEET_API_TOKEN", raising=False)
    yield monkeypatch


def _posfleet(*argv: str) -> int:
    return main(list(argv))


async def test_one_terminal_updates_end_to_end_and_a_boot_looping_image_is_rolled_back(
    broker: PrivateBroker,
    tmp_path: Path,
    api_token_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = release_key(tmp_path / "keys", "rel-e2e")
    async with (
        central_for(broker, tmp_path, key) as (central, artifacts),
        field_terminals(broker, tmp_path, key, "GOOD", "LOOP") as fleet,
    ):
        good, loop = fleet["GOOD"], fleet["LOOP"]
        for spot in (good, loop):
            await registered(central, spot, online=True)
        model = good.hardware.identity.model
        await upload(
            artifacts, key, make_image("2.5.0", IMAGE_SIZE, models=(model,)), "2.5.0", model
        )
        looping = make_image("2.6.0", IMAGE_SIZE, models=(model,), boot_loop=True)
        await upload(artifacts, key, looping, "2.6.0", model)

        api_token_env.setenv("POSFLEET_API_TOKEN", central.token)
        server = central.service.url
        for artifact, spot in (("pos-os@2.5.0", good), ("pos-os@2.6.0", loop)):
            code = await asyncio.to_thread(
                _posfleet, "firmware", "push", artifact, "--terminals", spot.terminal_id,
                "--window", ANY_TIME, "--reason", "e2e", "--server", server,
            )  # fmt: skip
            assert code == 0, capsys.readouterr()
        pushed = capsys.readouterr().out
        assert pushed.count("1 action(s) created, 1 offered now") == 2

        # Ops watches until both Actions are final; the watch ends by itself then.
        code = await asyncio.to_thread(
            _posfleet, "firmware", "actions", "--watch", "--interval", "0.5", "--server", server
        )
        watched = capsys.readouterr().out
        assert code == 0
        assert "succeeded" in watched and "rolled_back" in watched and "0 open" in watched

        listed = await central.get_json("/api/v1/firmware/actions")
        by_terminal = {a["terminal_id"]: a for a in listed["items"]}
        assert listed["counts"]["by_state"]["succeeded"] == 1
        assert listed["counts"]["by_state"]["rolled_back"] == 1

        success = await action_of(central, by_terminal[good.terminal_id]["id"])
        assert success["action"]["state"] == "succeeded" and success["action"]["progress"] == 1.0
        seen = [e["state"] for e in success["events"] if e["source"] == "terminal"]
        for step in ("accepted", "downloading", "verifying", "installing", "rebooting"):
            assert step in seen, seen
        assert seen[-1] == "succeeded"
        assert good.hardware.firmware.active.value == "B"
        assert good.hardware.identity.firmware_version == "2.5.0"

        rolled = by_terminal[loop.terminal_id]
        assert rolled["state"] == "rolled_back"
        assert "rolled back on its own: new image failed to boot" in rolled["detail"]
        assert loop.hardware.identity.firmware_version == "2.4.1"

        async def registry_shows_the_new_version() -> bool:
            found = await central.terminals()
            return bool(
                found[good.terminal_id]["firmware_version"] == "2.5.0"
                and found[loop.terminal_id]["firmware_version"] == "2.4.1"
            )

        await async_wait_for(registry_shows_the_new_version, timeout=20)
        shown = json.loads(await asyncio.to_thread(_run_json, server, good.terminal_id, capsys))
        assert [a["state"] for a in shown["items"]] == ["succeeded"]


def _run_json(server: str, terminal_id: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert (
        _posfleet("firmware", "actions", "--terminal", terminal_id, "--json", "--server", server)
        == 0
    )
    return capsys.readouterr().out


SHANGHAI, BERLIN = "Asia/Shanghai", "Europe/Berlin"


def _window_open_now_in(zone_name: str, now: datetime) -> tuple[str, str]:
    """``(start, end)``: local HH:MM in ``zone_name``, opened a minute ago, 30 minutes long."""
    start = (now - timedelta(minutes=1)).astimezone(ZoneInfo(zone_name))
    start = start.replace(second=0, microsecond=0)
    end = start + timedelta(minutes=30)
    return start.strftime("%H:%M"), end.strftime("%H:%M")


def _inside(window: tuple[str, str], zone_name: str, now: datetime) -> bool:
    """Whether ``now`` falls in the daily HH:MM ``window`` on the wall clock of ``zone_name``."""
    local = now.astimezone(ZoneInfo(zone_name))
    minute = local.hour * 60 + local.minute
    start, end = (int(t[:2]) * 60 + int(t[3:]) for t in window)
    return start <= minute < end if start < end else minute >= start or minute < end


def _next_opening(window: tuple[str, str], zone_name: str, now: datetime) -> str:
    """When ``window`` next opens in ``zone_name``, the way the agent writes a local time."""
    local = now.astimezone(ZoneInfo(zone_name))
    hours, minutes = (int(part) for part in window[0].split(":"))
    opens = local.replace(hour=hours, minute=minutes, second=0, microsecond=0)
    if opens <= local:
        opens = (opens + timedelta(days=1)).replace(hour=hours, minute=minutes)
    return opens.strftime("%Y-%m-%d %H:%M %Z")


async def _download_counters(central: CentralUnderTest) -> dict[str, float]:
    async with central.http.get(
        central.service.url + "/metrics", headers={"Authorization": f"Bearer {central.token}"}
    ) as response:
        assert response.status == 200
        text = await response.text()
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("posfleet_firmware_download"):
            found[name] = float(value)
    return found


async def _cancel(central: CentralUnderTest, action_id: int, reason: str) -> dict[str, Any]:
    async with central.http.post(
        f"{central.service.url}/api/v1/firmware/actions/{action_id}/cancel",
        json={"reason": reason},
        headers={"Authorization": f"Bearer {central.token}"},
    ) as response:
        answer = await response.json()
        assert response.status == 200, answer
        return answer  # type: ignore[no-any-return]


def _terminal_states(shown: dict[str, Any]) -> list[str]:
    return [e["state"] for e in shown["events"] if e["source"] == "terminal"]


async def test_terminals_in_shanghai_and_berlin_each_install_only_in_their_own_local_window(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    key = release_key(tmp_path / "keys", "rel-e2e")
    zones = {"SHA": SHANGHAI, "BER": BERLIN}
    async with (
        central_for(broker, tmp_path, key) as (central, artifacts),
        field_terminals(broker, tmp_path, key, "SHA", "BER", timezones=zones) as fleet,
    ):
        shanghai, berlin = fleet["SHA"], fleet["BER"]
        for spot, zone_name in ((shanghai, SHANGHAI), (berlin, BERLIN)):
            await registered(central, spot, online=True)
            shown = await central.get_json(f"/api/v1/terminals/{spot.terminal_id}")
            assert shown["timezone"] == zone_name, shown
        model = shanghai.hardware.identity.model
        await upload(
            artifacts, key, make_image("2.5.0", IMAGE_SIZE, models=(model,)), "2.5.0", model
        )

        # One window, one instant: open now on Shanghai's wall clock, and (Shanghai being
        # 6 or 7 hours ahead) the same HH:MM range is hours away on Berlin's.
        now = datetime.now(UTC)
        offsets = [now.astimezone(ZoneInfo(z)).utcoffset() for z in (SHANGHAI, BERLIN)]
        assert offsets[0] is not None and offsets[1] is not None
        assert offsets[0] - offsets[1] in (timedelta(hours=6), timedelta(hours=7))
        window = _window_open_now_in(SHANGHAI, now)
        assert _inside(window, SHANGHAI, now) and not _inside(window, BERLIN, now), window
        assert not _inside(window, BERLIN, now + timedelta(minutes=5)), window
        text = f"{window[0]}-{window[1]}"
        pushed = await push(
            central,
            artifact="pos-os@2.5.0",
            terminal_ids=[shanghai.terminal_id, berlin.terminal_id],
            window=text,
            reason="e2e: one window, two time zones",
        )
        assert pushed["offered"] == 2 and not pushed["refused"], pushed
        ids = {a["terminal_id"]: a["id"] for a in pushed["created"]}
        berlin_opens = _next_opening(window, BERLIN, now)

        updated = await ends(central, ids[shanghai.terminal_id], within_s=30)
        assert updated["action"]["state"] == "succeeded", updated
        seen = _terminal_states(updated)
        assert seen[-1] == "succeeded" and "installing" in seen, seen
        installing = next(e for e in updated["events"] if e["state"] == "installing")
        assert installing["detail"].startswith("maintenance window open until "), installing
        assert shanghai.hardware.identity.firmware_version == "2.5.0"

        async def berlin_waits() -> dict[str, Any] | None:
            shown = await action_of(central, ids[berlin.terminal_id])
            return shown if shown["action"]["state"] == "waiting_window" else None

        waiting = await async_wait_for(berlin_waits, timeout=10, description="Berlin waits")
        detail = waiting["action"]["detail"]
        assert detail == (
            f"waiting for the maintenance window ({text} {BERLIN}, every day); "
            f"it opens at {berlin_opens}"
        ), detail
        # Berlin fetched and checked the image ahead of its window, and wrote nothing to
        # the terminal: it runs 2.4.1 from slot A, slot B untouched, no transfer under way.
        seen = _terminal_states(waiting)
        assert seen[:2] == ["accepted", "downloading"] and "verifying" in seen, seen
        assert not {"installing", "rebooting"} & set(seen), seen
        slots = berlin.hardware.firmware
        assert berlin.hardware.identity.firmware_version == "2.4.1"
        assert (slots.active.value, slots.versions[slots.inactive]) == ("A", ""), slots.versions
        assert slots.transfer_received == 0 and slots.updates == 0
        counters = await _download_counters(central)
        assert counters["posfleet_firmware_downloads_completed_total"] == 2, counters
        assert counters["posfleet_firmware_download_bytes_total"] == 2 * IMAGE_SIZE, counters

        async def registry_versions() -> bool:
            found = await central.terminals()
            return bool(
                found[shanghai.terminal_id]["firmware_version"] == "2.5.0"
                and found[berlin.terminal_id]["firmware_version"] == "2.4.1"
            )

        await async_wait_for(registry_versions, timeout=20, description="registry versions")

        # Ops gives Berlin a window open on its own clock: cancel, push again. The cancel
        # reaches the agent, which drops the update it held for the night: image deleted,
        # nothing under way, so its old window can never install it.
        cancelled = await _cancel(central, ids[berlin.terminal_id], "e2e: Berlin window now")
        assert cancelled["state"] == "cancelled", cancelled
        assert cancelled["terminal_notice"]["sent"] is True, cancelled
        dropped = await _dropped_by_the_agent(central, berlin, ids[berlin.terminal_id])
        assert berlin.hardware.identity.firmware_version == "2.4.1"
        assert slots.transfer_received == 0 and slots.versions[slots.inactive] == ""
        assert dropped["action"]["state"] == "cancelled", dropped["action"]
        now = datetime.now(UTC)
        window = _window_open_now_in(BERLIN, now)
        assert _inside(window, BERLIN, now), window
        again = await push(
            central,
            artifact="pos-os@2.5.0",
            terminal_ids=[berlin.terminal_id],
            window=f"{window[0]}-{window[1]}",
        )
        done = await ends(central, again["created"][0]["id"], within_s=30)
        assert done["action"]["state"] == "succeeded", done
        seen = _terminal_states(done)
        assert "installing" in seen and seen[-1] == "succeeded", seen
        gone = await action_of(central, ids[berlin.terminal_id])
        assert gone["action"]["state"] == "cancelled", gone["action"]
        assert berlin.hardware.identity.firmware_version == "2.5.0"
        # The dropped image was deleted, so the new Action fetched it again.
        counters = await _download_counters(central)
        assert counters["posfleet_firmware_downloads_completed_total"] == 3, counters
        await async_wait_for(
            lambda: _registry_version(central, berlin.terminal_id, "2.5.0"),
            timeout=20,
            description="registry shows Berlin on 2.5.0",
        )


async def _dropped_by_the_agent(
    central: CentralUnderTest, spot: FieldTerminal, action_id: int
) -> dict[str, Any]:
    """Wait until the Action's history has the agent's answer to the cancel; check that
    the agent's own state agrees (nothing under way, no image kept). The Action with it."""

    async def answered() -> dict[str, Any] | None:
        shown = await action_of(central, action_id)
        states = {e["state"] for e in shown["events"]}
        return shown if {"cancel_done", "rejected"} <= states else None

    shown = await async_wait_for(answered, timeout=20, description="the agent drops it")
    assert shown is not None
    events = shown["events"]
    who = next(e["actor"] for e in events if e["state"] == "cancelled")
    told = next(e for e in events if e["state"] == "cancel_sent")
    assert told["source"] == "centre", told
    answer = next(e for e in events if e["state"] == "cancel_done")
    assert answer["source"] == "terminal", answer
    assert answer["detail"].startswith(f"stopped {action_id}.1 while waiting_window: "), answer
    assert "the downloaded image was deleted" in answer["detail"], answer
    # The agent's last word on the update: recorded, and the cancelled Action stays so.
    final = next(e for e in events if e["source"] == "terminal" and e["state"] == "rejected")
    assert final["detail"] == f"cancelled by {who} at the centre", final
    assert final["applied"] is False and final["note"].startswith("late: "), final

    folder = spot.settings.state_dir / "firmware"
    saved = json.loads((folder / "updater.json").read_text())
    assert saved["current"] is None, saved["current"]
    assert saved["cancelled"] == {str(action_id): f"cancelled by {who} at the centre"}, saved
    ended = [s for s in saved["finished"] if s["action_id"] == f"{action_id}.1"]
    assert [s["state"] for s in ended] == ["rejected"], saved["finished"]
    assert not [p.name for p in folder.iterdir() if p.suffix in (".img", ".part", ".etag")]
    return dict(shown)


async def _registry_version(central: CentralUnderTest, terminal_id: str, version: str) -> bool:
    return bool((await central.terminals())[terminal_id]["firmware_version"] == version)
