"""An agent process SIGKILLed mid-download and mid-install, through the real broker.

The agent runs as its own process (``posfleet-agent run``), exactly as on a terminal; the
simulated terminal (on a pty) and the image server live in the test process, so they
outlive the agent as hardware and the download service would. The centre's side is an
MQTT client with the central credentials: it publishes ``fw/offer`` and reads
``fw/status``. SIGKILL is the nearest a test gets to pulling the plug: nothing in the
agent gets to clean up.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from posfleet.contract import (
    Channel,
    FirmwareOffer,
    MaintenanceWindow,
    UpdateState,
    UpdateStatus,
    topic,
    utcnow,
)
from posfleet.simulator import SimulatedTerminal, serve_pty
from posfleet.simulator.firmware_images import make_image
from tests.component.agent_image_server import ImageServer, serve_image
from tests.harness import MqttProbe, PrivateBroker, async_wait_for
from tests.harness.firmware_release import ReleaseKey, release_key

FINAL = {UpdateState.SUCCEEDED, UpdateState.FAILED, UpdateState.REJECTED, UpdateState.ROLLED_BACK}


@dataclass
class Field:
    """One terminal in the field: its agent process, its hardware, the centre's view."""

    terminal_id: str
    env: dict[str, str]
    log: Path
    state_dir: Path
    terminal: SimulatedTerminal
    server: ImageServer
    probe: MqttProbe
    key: ReleaseKey
    process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "posfleet.agent.cli",
                "run",
                env=self.env,
                stdout=sink,
                stderr=sink,
            )

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        self.process = None

    async def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
            self.process = None

    def offer(self, version: str, image: bytes) -> str:
        self.server.image = image
        signed = self.key.sign(image, version=version, models=("PF-M100",))
        action_id = f"ACT-{version}"
        offer = FirmwareOffer(
            action_id=action_id,
            signed_manifest=signed,
            url=self.server.url.rsplit("/", 1)[0] + "/" + signed.manifest.sha256,
            token=self.server.token,
            window=MaintenanceWindow(start="00:00", end="00:00"),
            expires_at=utcnow() + timedelta(hours=1),
        )
        published = self.probe.publish(
            topic(self.terminal_id, Channel.FW_OFFER), offer.model_dump_json()
        )
        assert not published.is_failure
        return action_id

    def statuses(self, action_id: str) -> list[UpdateStatus]:
        found = []
        for message in self.probe.received(topic(self.terminal_id, Channel.FW_STATUS)):
            status = UpdateStatus.model_validate_json(message.payload)
            if status.action_id == action_id:
                found.append(status)
        return found

    async def final(self, action_id: str) -> UpdateStatus:
        def done() -> UpdateStatus | None:
            ends = [s for s in self.statuses(action_id) if s.state in FINAL]
            return ends[-1] if ends else None

        status = await async_wait_for(done, timeout=60, description=f"{action_id} ends")
        assert status is not None
        return status

    def online(self) -> bool:
        states = self.probe.received(topic(self.terminal_id, Channel.STATE))
        return bool(states) and json.loads(states[-1].payload)["online"]


@asynccontextmanager
async def field_terminal(
    broker: PrivateBroker, tmp_path: Path, name: str, *, block_size: int = 4096
) -> AsyncIterator[Field]:
    terminal_id = f"{name}-{tmp_path.name[-6:]}"
    creds = broker.provision_terminal(terminal_id)
    key = release_key(tmp_path / "keys", "rel-field")
    terminal = SimulatedTerminal(f"SN-{name}", seed=9, transactions_per_hour=0)
    terminal.firmware.block_size = block_size
    state_dir = tmp_path / "agent"
    async with AsyncExitStack() as stack:
        probe = broker.probe(broker.central)
        stack.callback(probe.close)
        probe.subscribe(topic(terminal_id, Channel.FW_STATUS))
        probe.subscribe(topic(terminal_id, Channel.STATE))
        server = await stack.enter_async_context(serve_image(ImageServer(b"-")))
        port = await stack.enter_async_context(serve_pty(terminal))
        env = dict(os.environ)
        env.update(
            POSFLEET_AGENT_TERMINAL_ID=terminal_id,
            POSFLEET_AGENT_PASSWORD=creds.password,
            POSFLEET_AGENT_BROKER_URL=broker.url,
            POSFLEET_AGENT_SERIAL_URL=port,
            POSFLEET_AGENT_HEALTH_INTERVAL_S="2",
            POSFLEET_AGENT_FAULT_POLL_S="0.5",
            POSFLEET_AGENT_RECONNECT_MAX_S="2",
            POSFLEET_AGENT_STATE_DIR=str(state_dir),
            POSFLEET_AGENT_FIRMWARE_TRUSTED_KEYS=json.dumps({key.key_id: str(key.public_path)}),
            POSFLEET_AGENT_FIRMWARE_HEALTH_WINDOW_S="1",
            POSFLEET_AGENT_FIRMWARE_HEALTH_POLL_S="0.2",
            POSFLEET_AGENT_FIRMWARE_RETRY_MIN_S="0.1",
            POSFLEET_AGENT_FIRMWARE_RETRY_MAX_S="0.5",
            POSFLEET_AGENT_FIRMWARE_WINDOW_RECHECK_S="0.2",
        )
        spot = Field(
            terminal_id, env, tmp_path / "agent.log", state_dir, terminal, server, probe, key
        )
        stack.push_async_callback(spot.stop)
        await spot.start()
        await async_wait_for(spot.online, timeout=30, description="the agent online")
        yield spot


async def test_an_agent_killed_mid_download_resumes_from_its_offset_after_restart(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    async with field_terminal(broker, tmp_path, "KILL-DL") as spot:
        image = make_image("2.5.0", 3 * 1024 * 1024)
        spot.server.delay_per_chunk_s = 0.004  # ~2 MB/s: the download takes a while
        action = spot.offer("2.5.0", image)
        await async_wait_for(
            lambda: spot.server.served and spot.server.served[-1].sent > len(image) // 3,
            timeout=30,
            description="a third of the image sent",
        )
        await spot.kill()
        partial = next((spot.state_dir / "firmware").glob("*.part"))
        kept = partial.stat().st_size
        assert 0 < kept < len(image)
        requests_before = len(spot.server.served)
        spot.server.delay_per_chunk_s = 0.0

        await spot.start()
        final = await spot.final(action)

    assert final.state is UpdateState.SUCCEEDED, final
    resumed = spot.server.served[requests_before]
    assert resumed.range_start == kept and resumed.status == 206
    assert resumed.headers["If-Range"] == spot.server.etag
    # The restarted agent says where it picked up.
    details = [s.detail for s in spot.statuses(action) if s.state is UpdateState.DOWNLOADING]
    assert any(f"after an agent restart at byte {kept} of" in d for d in details), details
    assert spot.terminal.identity.firmware_version == "2.5.0"


async def test_an_agent_killed_during_install_keeps_the_good_slot_and_finishes_after_restart(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    # Small blocks make a slow serial install: time to pull the plug in the middle.
    async with field_terminal(broker, tmp_path, "KILL-IN", block_size=512) as spot:
        image = make_image("2.6.0", 1024 * 1024)
        action = spot.offer("2.6.0", image)
        await async_wait_for(
            lambda: spot.terminal.firmware.transfer_received > len(image) // 4,
            timeout=60,
            interval=0.005,
            description="a quarter of the image written to slot B",
        )
        await spot.kill()
        # Power gone mid-install: the terminal still runs its good slot.
        assert spot.terminal.firmware.active.value == "A"
        assert spot.terminal.identity.firmware_version == "2.4.1"
        assert spot.terminal.firmware.transfer_received < len(image)

        await spot.start()
        final = await spot.final(action)

    assert final.state is UpdateState.SUCCEEDED, final
    installing = [s.detail for s in spot.statuses(action) if s.state is UpdateState.INSTALLING]
    assert any(
        "agent restarted during the install; the terminal kept slot A (2.4.1), the good slot" in d
        for d in installing
    ), installing
    assert spot.terminal.firmware.active.value == "B"
    assert spot.terminal.identity.firmware_version == "2.6.0"
    assert not spot.terminal.firmware.pending_confirm
