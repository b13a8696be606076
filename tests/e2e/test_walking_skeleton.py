"""Terminal to dashboard: simulated terminals, real agents, real broker, real central service."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from posfleet.contract import Channel, Topic, all_terminals_filter
from posfleet.simulator.fleet import FleetOptions, run_fleet
from posfleet.simulator.fleet_file import FleetTerminal
from posfleet.simulator.serial_endpoint import serve_pty
from posfleet.simulator.terminal_model import SimulatedTerminal
from tests.harness import PrivateBroker, async_wait_for
from tests.harness.central_service import start_central

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def _schema_for(channel: Channel) -> jsonschema.Draft202012Validator:
    name = f"{channel.value.replace('/', '-')}.schema.json"
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / name).read_text()))


async def test_real_payloads_match_the_exported_schemas_and_reach_the_api(
    broker: PrivateBroker, tmp_path: Path, sqlite_url: str
) -> None:
    ids = [f"SKEL-{i}-{tmp_path.name[-6:]}" for i in range(3)]
    terminals = [
        FleetTerminal(
            terminal_id=tid,
            password=broker.provision_terminal(tid).password,
            merchant_id="M42",
            site_id="site-a",
            timezone="Europe/Berlin",
            seed=i,
        )
        for i, tid in enumerate(ids)
    ]
    probe = broker.probe(broker.central)
    probe.subscribe(all_terminals_filter())
    options = FleetOptions(broker_url=broker.url, health_interval_s=1, state_dir=tmp_path / "fleet")
    stop = asyncio.Event()
    async with start_central(broker, tmp_path / "central", sqlite_url) as central:
        fleet = asyncio.create_task(run_fleet(terminals, options, stop))
        try:

            def seen(channel: Channel) -> set[str]:
                return {
                    Topic.parse(m.topic).terminal_id
                    for m in probe.received()
                    if m.topic.endswith("/" + channel.value) and m.topic.split("/")[2] in ids
                }

            await async_wait_for(
                lambda: all(
                    len(seen(c)) == 3 for c in (Channel.STATE, Channel.INVENTORY, Channel.HEALTH)
                ),
                timeout=20,
                description="state, inventory and health from all three terminals",
            )

            async def listed_with_health() -> bool:
                listed = await central.terminals()
                return all(listed.get(t, {}).get("health") for t in ids)

            await async_wait_for(listed_with_health, timeout=10, description="API lists them")
            listed = await central.terminals()
        finally:
            stop.set()
            await fleet
        probe.close()

    validators = {c: _schema_for(c) for c in (Channel.STATE, Channel.INVENTORY, Channel.HEALTH)}
    checked = 0
    for message in probe.received():
        parsed = Topic.parse(message.topic)
        if parsed.terminal_id not in ids or parsed.channel not in validators:
            continue
        errors = list(validators[parsed.channel].iter_errors(json.loads(message.payload)))
        assert errors == [], f"{message.topic}: {[e.message for e in errors]}"
        checked += 1
    assert checked >= 9
    for tid in ids:
        record = listed[tid]
        assert record["online"] is True
        assert record["merchant_id"] == "M42"
        assert record["site_id"] == "site-a"
        assert record["model"]
        assert record["health"]["printer"]["status"] in {"ok", "paper_low"}
        health_at = datetime.fromisoformat(record["health_at"])
        assert datetime.now(UTC) - health_at < timedelta(seconds=10)


def _agent_env(
    tmp_path: Path,
    *,
    terminal_id: str,
    password: str,
    broker: PrivateBroker,
    port: str,
    keepalive: int,
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        POSFLEET_AGENT_TERMINAL_ID=terminal_id,
        POSFLEET_AGENT_PASSWORD=password,
        POSFLEET_AGENT_BROKER_URL=broker.url,
        POSFLEET_AGENT_SERIAL_URL=port,
        POSFLEET_AGENT_KEEPALIVE_S=str(keepalive),
        POSFLEET_AGENT_HEALTH_INTERVAL_S="2",
        POSFLEET_AGENT_FAULT_POLL_S="1",
        POSFLEET_AGENT_STATE_DIR=str(tmp_path / "agent-state"),
    )
    return env


async def _spawn_agent(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "posfleet.agent.cli",
        "run",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def test_killed_agent_goes_offline_within_one_and_a_half_keepalives_and_comes_back(
    broker: PrivateBroker, tmp_path: Path, sqlite_url: str
) -> None:
    keepalive = 4
    terminal_id = f"LWT-{tmp_path.name[-8:]}"
    creds = broker.provision_terminal(terminal_id)
    terminal = SimulatedTerminal("SN-LWT", seed=7)
    async with (
        serve_pty(terminal) as port,
        start_central(broker, tmp_path / "c", sqlite_url) as central,
    ):
        env = _agent_env(
            tmp_path,
            terminal_id=terminal_id,
            password=creds.password,
            broker=broker,
            port=port,
            keepalive=keepalive,
        )
        agent = await _spawn_agent(env)
        try:

            async def state() -> dict[str, Any]:
                record: dict[str, Any] = (await central.terminals()).get(terminal_id, {})
                return record

            async def online_with_health() -> bool:
                record = await state()
                return bool(record.get("online") and record.get("health"))

            await async_wait_for(online_with_health, timeout=20, description="agent online")
            first_boot = (await state())["boot_id"]

            agent.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            await agent.wait()

            async def offline() -> bool:
                return (await state()).get("online") is False

            await async_wait_for(
                offline, timeout=1.5 * keepalive, description="LWT marks it offline"
            )
            assert time.monotonic() - killed_at <= 1.5 * keepalive

            agent = await _spawn_agent(env)
            await async_wait_for(online_with_health, timeout=20, description="back online")
            assert (await state())["boot_id"] != first_boot
        finally:
            if agent.returncode is None:
                agent.send_signal(signal.SIGTERM)
                await asyncio.wait_for(agent.wait(), 10)


async def test_agent_says_offline_itself_on_sigterm(
    broker: PrivateBroker, tmp_path: Path, sqlite_url: str
) -> None:
    terminal_id = f"TERM-{tmp_path.name[-8:]}"
    creds = broker.provision_terminal(terminal_id)
    async with (
        serve_pty(SimulatedTerminal("SN-T", seed=3)) as port,
        start_central(broker, tmp_path / "c", sqlite_url) as central,
    ):
        agent = await _spawn_agent(
            _agent_env(
                tmp_path,
                terminal_id=terminal_id,
                password=creds.password,
                broker=broker,
                port=port,
                keepalive=30,
            )
        )

        async def online() -> bool:
            return bool((await central.terminals()).get(terminal_id, {}).get("online"))

        await async_wait_for(online, timeout=20, description="agent online")
        agent.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(agent.wait(), 10) == 0

        async def offline() -> bool:
            return (await central.terminals()).get(terminal_id, {}).get("online") is False

        # Keepalive is 30 s: going offline within 5 s proves the agent's own goodbye.
        await async_wait_for(offline, timeout=5, description="clean shutdown says offline")


pytestmark = pytest.mark.e2e
