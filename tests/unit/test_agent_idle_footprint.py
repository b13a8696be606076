"""An idle agent (health, faults, state, inventory through its outbox) never loads pydantic;
the first command loads it, and is answered as before."""

from __future__ import annotations

import json
import subprocess
import sys

from posfleet.contract import Channel, CommandStatus, decode, topic

_SCRIPT = r"""
import asyncio, json, sys, tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from posfleet.agent.daemon import Agent, AgentIdentity
from posfleet.agent.drivers.maintenance import MaintenanceDriver
from posfleet.agent.drivers.maintenance_codes import Instruction, Tag
from posfleet.agent.outbox import Outbox
from posfleet.agent.serial import Apdu, FakeLink, failure, success
from posfleet.agent.serial.tlv import encode_tlv, flag_tlv, nested_tlv, sint_tlv, text_tlv, uint_tlv
from posfleet.agent.firmware_config import UpdaterConfig
from posfleet.agent.uplink import MemoryUplink

HEAVY = ("pydantic", "pydantic_core", "pydantic_settings", "cryptography")
fault_sent = False


def answer(request: Apdu) -> Apdu:
    global fault_sent
    if request.ins == Instruction.IDENTIFY:
        items = [text_tlv(Tag.MODEL, "PF-1"), text_tlv(Tag.SERIAL, "SN-1"),
                 text_tlv(Tag.FIRMWARE_VERSION, "2.4.1"), text_tlv(Tag.APP_VERSION, "pay=5.2")]
    elif request.ins == Instruction.READ_HEALTH:
        items = [flag_tlv(Tag.TAMPER, False), uint_tlv(Tag.BATTERY_PERMILLE, 815),
                 flag_tlv(Tag.BATTERY_CHARGING, True), sint_tlv(Tag.TEMPERATURE_DECI_C, 412),
                 uint_tlv(Tag.PRINTER_STATUS, 1), uint_tlv(Tag.STORAGE_PERMILLE, 2000),
                 uint_tlv(Tag.UPTIME_S, 3600)]
    elif request.ins == Instruction.READ_FAULTS:
        items = [] if fault_sent else [nested_tlv(Tag.FAULT, [
            uint_tlv(Tag.FAULT_SEQ, 1), text_tlv(Tag.FAULT_CODE, "printer.paper_low"),
            text_tlv(Tag.FAULT_COMPONENT, "printer"), text_tlv(Tag.FAULT_SEVERITY, "warning"),
            text_tlv(Tag.FAULT_DETAIL, "paper low")])]
        fault_sent = True
    else:
        return failure(0x83)
    return success(encode_tlv(items))


def heavy() -> list[str]:
    return sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in HEAVY})


async def main() -> None:
    work = Path(tempfile.mkdtemp())
    uplink = MemoryUplink()
    outbox = Outbox(work / "outbox.db", durable=False)
    agent = Agent(AgentIdentity("T-IDLE", boot_id="b1", timezone="Europe/Berlin"),
                  MaintenanceDriver(FakeLink(answer)), uplink, outbox,
                  health_interval_s=0.05, fault_poll_s=0.05,
                  firmware=UpdaterConfig(directory=work / "fw", trusted_keys=lambda: None))
    task = asyncio.create_task(agent.run())
    while sum(c == "health" for c, _ in uplink.published) < 5:
        await asyncio.sleep(0.02)
    idle = heavy()
    now = datetime.now(UTC)
    uplink.deliver(json.dumps({"id": "c1", "name": "read_counters", "issued_by": "t",
                               "issued_at": now.isoformat(),
                               "expires_at": (now + timedelta(hours=1)).isoformat()}).encode())
    while not any(c == "cmd/result" for c, _ in uplink.published):
        await asyncio.sleep(0.02)
    agent.stop()
    await task
    outbox.close()
    sent = [(r.channel, r.payload) for r in uplink.retained] + uplink.published
    messages = [(c.value, p.decode()) for c, p in sent]
    print(json.dumps({"idle": idle, "after_command": heavy(), "messages": messages}))


asyncio.run(main())
"""


def test_the_idle_loop_loads_no_pydantic_and_publishes_valid_messages() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["idle"] == []
    # Commands are validated with the contract's models, imported with the first one.
    assert "pydantic" in report["after_command"]
    assert "cryptography" not in report["after_command"]
    decoded: dict[str, list[object]] = {}
    for channel, payload in report["messages"]:
        message = decode(topic("T-IDLE", Channel(channel)), payload.encode())
        decoded.setdefault(channel, []).append(message.payload)
    assert set(decoded) == {"state", "inventory", "health", "event", "cmd/result"}
    health = decoded["health"][0]
    # The invalid section (storage at 200 %) is left out, the rest is reported.
    assert health.metrics.storage_used_pct is None  # type: ignore[attr-defined]
    assert health.metrics.battery.percent == 81.5  # type: ignore[attr-defined]
    event = decoded["event"][0]
    assert event.code == "printer.paper_low"  # type: ignore[attr-defined]
    result_payload = decoded["cmd/result"][0]
    # The driver refuses READ COUNTERS here: a failed result, answered all the same.
    assert result_payload.status is CommandStatus.FAILED  # type: ignore[attr-defined]
