"""Remote commands through the real broker: every whitelisted command answers, errors too.

The centre's side is played by an MQTT client with the central credentials: it publishes
``Command`` messages on the terminal's ``cmd`` topic and reads ``cmd/result``. The agent
runs in process against a simulated terminal on a pty.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from posfleet.agent.log_scrubber import luhn_valid
from posfleet.agent.runner import run_agent
from posfleet.agent.settings import AgentSettings
from posfleet.contract import Channel, topic
from posfleet.simulator.serial_endpoint import serve_pty
from posfleet.simulator.terminal_model import SimulatedTerminal
from tests.harness import MqttProbe, PrivateBroker, async_wait_for

PAN = "4111111111111111"
PAN_GROUPED = "5500-0000-0000-0004"


class Centre:
    """Publishes commands to one terminal and collects its results."""

    def __init__(self, probe: MqttProbe, terminal_id: str) -> None:
        self.probe = probe
        self.terminal_id = terminal_id
        self.result_topic = topic(terminal_id, Channel.CMD_RESULT)
        self._n = 0

    def results(self, command_id: str) -> list[dict[str, Any]]:
        return [
            json.loads(m.payload)
            for m in self.probe.received(self.result_topic)
            if json.loads(m.payload)["id"] == command_id
        ]

    def publish(self, payload: bytes | str) -> None:
        assert not self.probe.publish(topic(self.terminal_id, Channel.CMD), payload).is_failure

    def command(self, name: str, args: dict[str, Any] | None = None, **fields: Any) -> str:
        self._n += 1
        now = datetime.now(UTC)
        body = {
            "id": fields.pop("id", f"c{self._n}-{name}"),
            "name": name,
            "args": args or {},
            "issued_by": "alice@support",
            "issued_at": now.isoformat(),
            "expires_at": (now + timedelta(minutes=5)).isoformat(),
        }
        body.update(fields)
        self.publish(json.dumps(body))
        return str(body["id"])

    async def run(self, name: str, args: dict[str, Any] | None = None, **fields: Any) -> Any:
        command_id = self.command(name, args, **fields)
        return (await self.wait(command_id))[0]

    async def wait(self, command_id: str, count: int = 1) -> list[dict[str, Any]]:
        await async_wait_for(
            lambda: len(self.results(command_id)) >= count,
            timeout=20,
            description=f"result of {command_id}",
        )
        return self.results(command_id)


@asynccontextmanager
async def _agent(
    broker: PrivateBroker, tmp_path: Path, terminal: SimulatedTerminal
) -> AsyncIterator[Centre]:
    terminal_id = f"CMD-{tmp_path.name[-8:]}"
    creds = broker.provision_terminal(terminal_id)
    probe = broker.probe(broker.central)
    probe.subscribe(topic(terminal_id, Channel.CMD_RESULT))
    probe.subscribe(topic(terminal_id, Channel.STATE))
    stop = asyncio.Event()
    async with serve_pty(terminal) as port:
        settings = AgentSettings(
            terminal_id=terminal_id,
            broker_url=broker.url,
            password=creds.password,
            serial_url=port,
            health_interval_s=30,
            fault_poll_s=5,
            state_dir=tmp_path / "agent",
        )
        agent = asyncio.create_task(run_agent(settings, stop))
        try:
            # Its first connect creates the agent's persistent session (and subscription);
            # from then on the broker keeps its commands even while it is offline.
            await async_wait_for(
                lambda: any(
                    json.loads(m.payload)["online"]
                    for m in probe.received(topic(terminal_id, Channel.STATE))
                ),
                timeout=20,
                description="the agent online",
            )
            yield Centre(probe, terminal_id)
        finally:
            stop.set()
            await agent
            probe.close()


async def test_every_whitelisted_command_round_trips_with_a_result(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    terminal = SimulatedTerminal("SN-CMD", seed=5)
    terminal.log(f"approved card {PAN} amount 12.50 EUR")
    terminal.log(f"declined card {PAN_GROUPED} code 05")
    now = datetime.now(UTC)
    async with _agent(broker, tmp_path, terminal) as centre:
        diagnostics = {
            name: await centre.run(name)
            for name in ("print_test", "card_reader_test", "host_ping", "self_test")
        }
        for name, result in diagnostics.items():
            assert result["status"] == "ok", (name, result)
            assert result["output"]["passed"] is True
        assert diagnostics["host_ping"]["output"]["latency_ms"] > 0

        printed = await centre.run("print_line", {"text": "Have a nice day"})
        assert printed["status"] == "ok"
        assert "Have a nice day" in terminal.printed

        clock = await centre.run("sync_clock")
        assert clock["status"] == "ok" and "previous_offset_s" in clock["output"]

        counters = await centre.run("read_counters")
        assert counters["status"] == "ok" and counters["output"]["lines_printed"] > 0

        health = await centre.run("read_health")
        assert health["status"] == "ok" and health["output"]["printer"]["status"]

        backup = await centre.run("backup_config")
        assert backup["status"] == "ok" and backup["output"]["params"]
        restored = await centre.run("restore_config", {"params": backup["output"]["params"]})
        assert restored["status"] == "ok", restored
        output = restored["output"]
        assert sorted(output["applied"] + list(output["rejected"])) == sorted(
            backup["output"]["params"]
        )

        logs = await centre.run(
            "collect_logs",
            {
                "from": (now - timedelta(hours=1)).isoformat(),
                "to": (now + timedelta(hours=1)).isoformat(),
            },
        )
        assert logs["status"] == "ok", logs
        assert "approved card 411111******1111 amount 12.50 EUR" in logs["output"]["text"]
        assert "5500-00**-****-0004" in logs["output"]["text"]
        assert logs["output"]["masked_card_numbers"] == 2

        rebooted = await centre.run("reboot")
        assert rebooted["status"] in ("ok", "failed"), rebooted
        if rebooted["status"] == "failed":
            assert "refused" in rebooted["error"]
        else:
            assert terminal.reboots == 1

        # No card number left the agent, in any result, in any form.
        for message in centre.probe.received(centre.result_topic):
            assert PAN.encode() not in message.payload
            for run in re.findall(rb"[0-9][0-9 -]{11,}[0-9]", message.payload):
                digits = re.sub(rb"[^0-9]", b"", run).decode()
                assert not (13 <= len(digits) <= 19 and luhn_valid(digits)), run


async def test_bad_commands_get_error_results_and_repeats_are_not_run_again(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    terminal = SimulatedTerminal("SN-BAD", seed=6)
    async with _agent(broker, tmp_path, terminal) as centre:
        unknown = await centre.run("format_disk")
        assert unknown["status"] == "rejected" and "unknown command" in unknown["error"]

        past = datetime.now(UTC) - timedelta(minutes=1)
        expired = await centre.run("print_line", {"text": "late"}, expires_at=past.isoformat())
        assert expired["status"] == "expired"
        assert "late" not in terminal.printed

        invalid = await centre.run("collect_logs", {"from": "yesterday"})
        assert invalid["status"] == "rejected" and "invalid arguments" in invalid["error"]

        centre.publish(json.dumps({"id": "shapeless-1", "name": "reboot"}))
        (shapeless,) = await centre.wait("shapeless-1")
        assert shapeless["status"] == "rejected" and "malformed" in shapeless["error"]

        centre.publish(b"\xff not json at all")
        once = await centre.run("print_line", {"text": "only once"}, id="repeat-1")
        assert once["status"] == "ok"
        centre.command("print_line", {"text": "only once"}, id="repeat-1")
        again = await centre.wait("repeat-1", count=2)
        assert again[1] == again[0]
        assert terminal.printed.count("only once") == 1


pytestmark = pytest.mark.e2e
