"""The agent's firmware updater end to end in process: a simulated terminal on a real pty,
a real aiohttp image server, the real outbox; only the broker is the in-memory uplink.

Every test reads what the centre would read: the ``fw/status`` messages, in order.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from posfleet.agent.daemon import Agent, AgentIdentity
from posfleet.agent.drivers import MaintenanceDriver, ZvtDriver
from posfleet.agent.drivers.maintenance_actions import FirmwareImageInfo
from posfleet.agent.firmware_updater import UpdaterConfig
from posfleet.agent.outbox import Outbox
from posfleet.agent.serial import SerialLink
from posfleet.agent.uplink import MemoryUplink
from posfleet.contract import (
    Channel,
    FirmwareOffer,
    MaintenanceWindow,
    SignedManifest,
    UpdateState,
    UpdateStatus,
)
from posfleet.firmware.signing import TrustedKeys
from posfleet.simulator import SimulatedTerminal, serve_pty
from posfleet.simulator.firmware_images import make_image
from tests.component.agent_image_server import ImageServer, serve_image
from tests.harness import async_wait_for
from tests.harness.firmware_release import ReleaseKey, release_key, trusting

FINAL = {UpdateState.SUCCEEDED, UpdateState.FAILED, UpdateState.REJECTED, UpdateState.ROLLED_BACK}
IMAGE_SIZE = 200_000


class ShiftedClock:
    """Real time, shifted by whatever the test jumps: the health window still elapses."""

    def __init__(self, start: datetime | None = None) -> None:
        self._base = start or datetime.now(UTC)
        self._t0 = time.monotonic()

    def __call__(self) -> datetime:
        return self._base + timedelta(seconds=time.monotonic() - self._t0)

    def jump(self, **delta: float) -> None:
        self._base += timedelta(**delta)


@dataclass
class Rig:
    """One agent with its terminal, its image server and its release keys."""

    terminal: SimulatedTerminal
    agent: Agent
    uplink: MemoryUplink
    server: ImageServer
    keys: list[ReleaseKey]
    clock: Callable[[], datetime]
    state_dir: Path
    offers: int = 0

    def statuses(self, action_id: str) -> list[UpdateStatus]:
        return [
            UpdateStatus.model_validate_json(payload)
            for channel, payload in self.uplink.published
            if channel is Channel.FW_STATUS and json.loads(payload)["action_id"] == action_id
        ]

    def states(self, action_id: str) -> list[UpdateState]:
        states: list[UpdateState] = []
        for status in self.statuses(action_id):
            if not states or states[-1] is not status.state:
                states.append(status.state)
        return states

    def offer(
        self,
        *,
        version: str = "2.5.0",
        image: bytes | None = None,
        key: ReleaseKey | None = None,
        window: MaintenanceWindow | None = None,
        action_id: str | None = None,
        not_before: datetime | None = None,
        **manifest: Any,
    ) -> str:
        """Publish an offer for ``image`` (default: a good image of ``version``)."""
        self.offers += 1
        action_id = action_id or f"ACT-{self.offers}"
        image = image if image is not None else make_image(version, IMAGE_SIZE)
        self.server.image = self.server.image if manifest.pop("keep_server", False) else image
        fields: dict[str, Any] = {"version": version, "models": ("PF-M100", "PF-C200")}
        fields.update(manifest)
        signed: SignedManifest = (key or self.keys[0]).sign(image, **fields)
        offer = FirmwareOffer(
            action_id=action_id,
            signed_manifest=signed,
            url=self.server.url.rsplit("/", 1)[0] + "/" + signed.manifest.sha256,
            token=self.server.token,
            window=window or MaintenanceWindow(start="00:00", end="00:00"),
            not_before=not_before,
            expires_at=self.clock() + timedelta(days=2),
        )
        self.uplink.deliver_offer(offer.model_dump_json().encode())
        return action_id

    async def final(self, action_id: str, wait_s: float = 30) -> UpdateStatus:
        def done() -> UpdateStatus | None:
            finals = [s for s in self.statuses(action_id) if s.state in FINAL]
            return finals[-1] if finals else None

        status = await async_wait_for(done, timeout=wait_s, description=f"{action_id} ends")
        assert status is not None
        return status


@asynccontextmanager
async def rig(
    tmp_path: Path,
    *,
    timezone: str = "UTC",
    clock: Callable[[], datetime] | None = None,
    protocol: str = "maintenance",
    name: str = "T-FW",
    health_window_s: float = 0.6,
    terminal: SimulatedTerminal | None = None,
) -> AsyncIterator[Rig]:
    """An agent on a simulated terminal over a pty, with an image server and keys.

    Pass the ``terminal`` of an earlier rig on the same ``tmp_path`` to restart its agent.
    """
    keys = [release_key(tmp_path / "keys", "rel-1"), release_key(tmp_path / "keys", "rel-2")]
    trusted: TrustedKeys = trusting(*keys, revoked=("rel-2",))
    if terminal is None:
        terminal = SimulatedTerminal(
            f"SN-{name}",
            seed=4,
            transactions_per_hour=0,
            protocol=protocol,  # type: ignore[arg-type]
        )
    state_dir = tmp_path / name
    clock = clock or ShiftedClock()
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(serve_image(ImageServer(b"-")))
        port = await stack.enter_async_context(serve_pty(terminal))
        link = await stack.enter_async_context(SerialLink(port, ack_timeout=0.5))
        outbox = Outbox(state_dir / "outbox.sqlite3", durable=False)
        stack.callback(outbox.close)
        driver = ZvtDriver(link) if protocol == "zvt" else MaintenanceDriver(link)
        uplink = MemoryUplink()
        agent = Agent(
            AgentIdentity(name, boot_id="b1", timezone=timezone),
            driver,
            uplink,
            outbox,
            health_interval_s=1,
            fault_poll_s=0.1,
            clock=clock,
            firmware=UpdaterConfig(
                directory=state_dir / "firmware",
                trusted_keys=trusted,
                terminal_id=name,
                timezone=timezone,
                driver_name=protocol,
                health_window_s=health_window_s,
                boot_timeout_s=5,
                health_poll_s=0.1,
                busy_retry_s=0.2,
                window_recheck_s=0.05,
                retry_min_s=0.05,
                retry_max_s=0.2,
                download_chunk_bytes=16 * 1024,
            ),
        )
        task = asyncio.create_task(agent.run())
        try:
            yield Rig(terminal, agent, uplink, server, keys, clock, state_dir)
        finally:
            agent.stop()
            await task


def _inventory_versions(uplink: MemoryUplink) -> str:
    return str(
        next(
            json.loads(r.payload)["firmware_version"]
            for r in uplink.retained
            if r.channel is Channel.INVENTORY
        )
    )


async def test_an_update_installs_into_slot_b_confirms_it_and_reports_the_new_version(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        action = r.offer(version="2.5.0")
        final = await r.final(action)
        assert final.state is UpdateState.SUCCEEDED, final
        assert "running 2.5.0 on slot B, confirmed" in final.detail and final.progress == 1.0
        assert r.states(action) == [
            UpdateState.ACCEPTED,
            UpdateState.DOWNLOADING,
            UpdateState.VERIFYING,
            UpdateState.INSTALLING,
            UpdateState.REBOOTING,
            UpdateState.SUCCEEDED,
        ]
        firmware = r.terminal.firmware
        assert firmware.active.value == "B" and not firmware.pending_confirm
        assert r.terminal.identity.firmware_version == "2.5.0"
        await async_wait_for(lambda: _inventory_versions(r.uplink) == "2.5.0", timeout=5)
        # Progress is throttled: every 5 % or so, not once per block.
        installing = [s for s in r.statuses(action) if s.state is UpdateState.INSTALLING]
        assert 5 <= len(installing) <= 22
        assert [s.progress for s in installing] == sorted(s.progress for s in installing)
        assert not list((r.state_dir / "firmware").glob("*.img"))


async def test_a_boot_looping_image_is_rolled_back_with_the_reason(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        action = r.offer(version="2.6.0", image=make_image("2.6.0", IMAGE_SIZE, boot_loop=True))
        final = await r.final(action)
    assert final.state is UpdateState.ROLLED_BACK
    assert "the terminal rolled back on its own: new image failed to boot 3 times" in final.detail
    assert "running slot A (2.4.1)" in final.detail
    assert r.terminal.identity.firmware_version == "2.4.1"


async def test_a_critical_fault_in_the_health_window_rolls_the_update_back(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, health_window_s=3) as r:
        image = make_image("2.7.0", IMAGE_SIZE, crash_after_boot=True)
        action = r.offer(version="2.7.0", image=image)
        final = await r.final(action)
        assert final.state is UpdateState.ROLLED_BACK, final
        assert "critical fault firmware.app_crash" in final.detail
        assert "back on slot A (2.4.1)" in final.detail
        assert r.terminal.identity.firmware_version == "2.4.1"
        await async_wait_for(lambda: _inventory_versions(r.uplink) == "2.4.1", timeout=5)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("forged", "manifest signature does not verify"),
        ("unknown_key", "key id 'rel-rogue' is not trusted"),
        ("revoked_key", "key id 'rel-2' is revoked"),
        ("wrong_model", "'PF-M100' is not among the models"),
        ("downgrade", "older than the running 2.4.1"),
        ("below_min", "older than 2.4.5, the oldest version"),
    ],
)
async def test_refused_offers_download_nothing_and_say_why(
    tmp_path: Path, case: str, reason: str
) -> None:
    async with rig(tmp_path) as r:
        kwargs: dict[str, Any] = {}
        if case == "unknown_key":
            kwargs["key"] = release_key(tmp_path / "rogue", "rel-rogue")
        elif case == "revoked_key":
            kwargs["key"] = r.keys[1]
        elif case == "wrong_model":
            kwargs["models"] = ("PF-C200",)
        elif case == "downgrade":
            kwargs["version"] = "2.3.0"
        elif case == "below_min":
            kwargs["min_version"] = "2.4.5"
        if case == "forged":
            good = r.keys[0].sign(b"x", version="2.5.0", models=("PF-M100",))
            forged = good.model_copy(
                update={"manifest": good.manifest.model_copy(update={"version": "2.9.9"})}
            )
            offer = FirmwareOffer(
                action_id="ACT-F",
                signed_manifest=forged,
                url=r.server.url,
                token=r.server.token,
                window=MaintenanceWindow(),
                expires_at=r.clock() + timedelta(days=1),
            )
            r.uplink.deliver_offer(offer.model_dump_json().encode())
            action = "ACT-F"
        else:
            action = r.offer(**kwargs)
        final = await r.final(action)
        assert final.state is UpdateState.REJECTED and reason in final.detail
        assert r.server.served == []  # not one byte was asked for
        assert r.terminal.identity.firmware_version == "2.4.1"
        reports = r.agent.reports_stored
        await async_wait_for(lambda: r.agent.reports_stored > reports, timeout=5)


async def test_a_wrong_sha256_or_a_truncated_image_fails_and_keeps_the_old_firmware(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        good = make_image("2.5.0", IMAGE_SIZE)
        evil = bytearray(good)
        evil[-1] ^= 0xFF
        # The server holds other bytes than the ones signed.
        action = r.offer(image=good)
        r.server.image = bytes(evil)
        wrong = await r.final(action)
        assert wrong.state is UpdateState.FAILED and "does not match the manifest" in wrong.detail
        assert "partial image deleted" in wrong.detail
        assert not list((r.state_dir / "firmware").glob("*.part"))

        action = r.offer(image=good, version="2.5.0")
        r.server.image = good[: IMAGE_SIZE // 2]
        short = await r.final(action)
        assert short.state is UpdateState.FAILED and "truncated or wrong image" in short.detail
        assert r.terminal.identity.firmware_version == "2.4.1"


async def test_an_image_the_terminal_refuses_fails_with_the_terminals_words(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        action = r.offer(version="2.5.0", image=make_image("2.5.0", IMAGE_SIZE, reject=True))
        final = await r.final(action)
    assert final.state is UpdateState.FAILED
    assert "the terminal refused the image" in final.detail and "0xF4" in final.detail
    assert r.terminal.firmware.active.value == "A"


async def test_a_sale_in_progress_defers_the_activation_until_it_is_over(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.terminal.begin_sale()
        action = r.offer(version="2.5.0")

        def deferred() -> bool:
            return any(
                s.state is UpdateState.WAITING_WINDOW and "busy" in s.detail
                for s in r.statuses(action)
            )

        await async_wait_for(deferred, timeout=20, description="the install deferred")
        assert r.terminal.identity.firmware_version == "2.4.1"
        r.terminal.end_sale()
        final = await r.final(action)
    assert final.state is UpdateState.SUCCEEDED
    assert r.terminal.identity.firmware_version == "2.5.0"


async def test_an_offer_seen_again_re_announces_its_final_status_and_runs_once(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        action = r.offer(version="2.5.0", action_id="ACT-ONCE")
        first = await r.final(action)
        requests = len(r.server.served)
        r.offer(version="2.5.0", action_id="ACT-ONCE")
        await async_wait_for(
            lambda: [s for s in r.statuses(action) if s.state in FINAL] == [first, first],
            timeout=5,
            description="the final status re-sent",
        )
        assert len(r.server.served) == requests and r.terminal.firmware.updates == 1
        # A second action while none runs is a new update; one while another runs is refused.
        busy_first = r.offer(version="2.6.0")
        busy_second = r.offer(version="2.7.0", keep_server=True)
        refused = await r.final(busy_second)
        assert refused.state is UpdateState.REJECTED
        assert f"another firmware update (action {busy_first}) is in progress" in refused.detail
        assert (await r.final(busy_first)).state is UpdateState.SUCCEEDED


async def test_the_zvt_driver_rejects_every_offer(tmp_path: Path) -> None:
    async with rig(tmp_path, protocol="zvt") as r:
        action = r.offer()
        final = await r.final(action)
    assert final.state is UpdateState.REJECTED
    assert final.detail == "driver zvt cannot install firmware"


async def test_shanghai_and_berlin_offered_at_one_instant_install_in_their_own_windows(
    tmp_path: Path,
) -> None:
    # 15:00 UTC: 23:00 in Shanghai (inside 22:00-06:00), 16:00 in Berlin (outside).
    clock = ShiftedClock(datetime(2026, 3, 10, 15, 0, tzinfo=UTC))
    night = MaintenanceWindow(start="22:00", end="06:00")
    async with (
        rig(tmp_path / "sh", timezone="Asia/Shanghai", clock=clock, name="T-SH") as shanghai,
        rig(tmp_path / "be", timezone="Europe/Berlin", clock=clock, name="T-BE") as berlin,
    ):
        sh_action = shanghai.offer(window=night)
        be_action = berlin.offer(window=night)
        assert (await shanghai.final(sh_action)).state is UpdateState.SUCCEEDED

        def berlin_waits() -> UpdateStatus | None:
            waiting = [
                s for s in berlin.statuses(be_action) if s.state is UpdateState.WAITING_WINDOW
            ]
            return waiting[-1] if waiting else None

        waiting = await async_wait_for(berlin_waits, timeout=10)
        assert waiting is not None and "it opens at 2026-03-10 22:00 CET" in waiting.detail
        assert berlin.terminal.identity.firmware_version == "2.4.1"

        clock.jump(hours=6, minutes=5)  # 21:05 UTC: 22:05 in Berlin
        assert (await berlin.final(be_action)).state is UpdateState.SUCCEEDED
        installing = [s for s in berlin.statuses(be_action) if s.state is UpdateState.INSTALLING]
        assert installing and all(
            s.ts >= datetime(2026, 3, 10, 21, 0, tzinfo=UTC) for s in installing
        )


def test_the_image_helper_builds_exact_sizes() -> None:
    image = make_image("2.5.0", 12_345, boot_loop=True)
    assert len(image) == 12_345 and image == make_image("2.5.0", 12_345, boot_loop=True)
    assert hashlib.sha256(image).digest() != hashlib.sha256(make_image("2.5.0", 12_345)).digest()


async def test_an_agent_stopped_in_the_health_window_watches_again_and_confirms(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path, health_window_s=30) as first:
        action = first.offer(version="2.5.0")

        def on_trial() -> bool:
            return any("on trial" in s.detail for s in first.statuses(action))

        await async_wait_for(on_trial, timeout=20, description="the new slot on trial")
    terminal = first.terminal
    assert terminal.firmware.pending_confirm and terminal.firmware.active.value == "B"

    async with rig(tmp_path, health_window_s=0.5, terminal=terminal) as second:
        final = await second.final(action)
    assert final.state is UpdateState.SUCCEEDED, final
    assert not terminal.firmware.pending_confirm and terminal.identity.firmware_version == "2.5.0"


async def test_a_trial_slot_no_action_vouches_for_is_rolled_back_at_start(tmp_path: Path) -> None:
    terminal = SimulatedTerminal("SN-ORPHAN", seed=4, transactions_per_hour=0)
    image = make_image("9.0.0", 20_000)
    firmware = terminal.firmware
    firmware.begin(FirmwareImageInfo(len(image), hashlib.sha256(image).digest(), "9.0.0"))
    for offset in range(0, len(image), firmware.block_size):
        firmware.write(offset, image[offset : offset + firmware.block_size])
    firmware.verify()
    terminal.activate_firmware()
    assert firmware.pending_confirm and terminal.identity.firmware_version == "9.0.0"

    async with rig(tmp_path, terminal=terminal):
        await async_wait_for(lambda: not firmware.pending_confirm, timeout=10)
    assert terminal.identity.firmware_version == "2.4.1" and firmware.active.value == "A"


async def test_a_re_offer_with_a_fresh_token_is_used_when_the_download_resumes(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        image = make_image("2.5.0", 1_000_000)
        r.server.delay_per_chunk_s = 0.002
        action = r.offer(version="2.5.0", image=image, action_id="ACT-RENEW")
        await async_wait_for(
            lambda: r.server.served and r.server.served[-1].sent > 100_000, timeout=10
        )
        # The centre re-publishes the offer with a new token; the old one stops working.
        r.server.token = "n" * 32
        r.offer(version="2.5.0", image=image, action_id="ACT-RENEW", keep_server=True)
        updater = r.agent.firmware
        assert updater is not None
        await async_wait_for(
            lambda: updater.current is not None and updater.current.offer.token == "n" * 32,
            timeout=5,
        )
        r.server.delay_per_chunk_s = 0.0
        r.server.cut_now = True
        final = await r.final(action)
    assert final.state is UpdateState.SUCCEEDED, final
    assert len(r.server.served) == 2 and r.server.served[0].cut
    assert r.server.served[1].headers["Authorization"] == "Bearer " + "n" * 32
    assert r.server.served[1].range_start > 100_000


async def test_malformed_offers_are_answered_when_they_name_an_action(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.uplink.deliver_offer(b"\xff not json")
        r.uplink.deliver_offer(json.dumps({"action_id": "ACT-BAD", "url": 5}).encode())
        final = await r.final("ACT-BAD")
        assert final.state is UpdateState.REJECTED and final.detail.startswith("malformed offer")
        updater = r.agent.firmware
        assert updater is not None
        await async_wait_for(lambda: updater.malformed == 1, timeout=5)
        assert len(r.uplink.acked) == 2  # both taken off the broker: resending cannot help
        # The updater goes on working.
        assert (await r.final(r.offer())).state is UpdateState.SUCCEEDED


async def test_nothing_is_downloaded_before_the_offers_not_before(tmp_path: Path) -> None:
    clock = ShiftedClock()
    async with rig(tmp_path, clock=clock) as r:
        action = r.offer(not_before=clock() + timedelta(hours=1))

        def told() -> bool:
            return any("the download starts at" in s.detail for s in r.statuses(action))

        await async_wait_for(told, timeout=5)
        assert r.server.served == []
        clock.jump(hours=1, minutes=1)
        assert (await r.final(action)).state is UpdateState.SUCCEEDED
