"""Diagnostics end to end: a terminal publishes through the real broker, the real central
service ingests, the engine opens an incident, staff work it through the API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from posfleet.contract import (
    Channel,
    Component,
    FaultEvent,
    HealthMetrics,
    HealthReport,
    Inventory,
    Printer,
    PrinterStatus,
    Severity,
    State,
    encode,
    topic,
    utcnow,
)
from posfleet.store.accounts import Role, create_api_token
from tests.harness import MqttProbe, PrivateBroker, async_wait_for
from tests.harness.central_service import CentralUnderTest, start_central

pytestmark = pytest.mark.e2e
TID = "E2E-DIAG-1"


async def _publish(
    terminal: MqttProbe, channel: Channel, payload: bytes, retain: bool = False
) -> None:
    await asyncio.to_thread(terminal.publish, topic(TID, channel), payload, retain=retain)


def _health(seq: int, status: PrinterStatus) -> bytes:
    metrics = HealthMetrics(printer=Printer(status=status, lines_printed=1000))
    return encode(HealthReport(seq=seq, ts=utcnow(), interval_s=60, metrics=metrics))


async def _incidents(central: CentralUnderTest, **params: str) -> list[dict[str, Any]]:
    body = await central.get_json("/api/v1/incidents", terminal_id=TID, **params)
    items: list[dict[str, Any]] = body["items"]
    return items


async def _post(
    central: CentralUnderTest, path: str, token: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    async with central.http.post(
        central.service.url + path,
        json=body or {},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        return response.status, await response.json()


async def test_a_printer_fault_becomes_an_incident_staff_can_work_and_it_resolves(
    broker: PrivateBroker, tmp_path: Path, sqlite_url: str
) -> None:
    creds = broker.provision_terminal(TID)
    terminal = broker.probe(creds)
    try:
        async with start_central(broker, tmp_path / "central", sqlite_url) as central:
            inventory = Inventory(
                model="PF-M100",
                serial="S1",
                firmware_version="2.4.1",
                agent_version="1.0.0",
                site_id="SHOP-9",
                ts=utcnow(),
            )
            await _publish(terminal, Channel.INVENTORY, encode(inventory), retain=True)
            state = State(online=True, agent_version="1.0.0", boot_id="b1", ts=utcnow())
            await _publish(terminal, Channel.STATE, encode(state), retain=True)
            await _publish(terminal, Channel.HEALTH, _health(1, PrinterStatus.OK))
            event = FaultEvent(
                seq=2,
                ts=utcnow(),
                code="printer.jam",
                component=Component.PRINTER,
                severity=Severity.ERROR,
                detail="paper jam",
                zvt_result_code=0xCC,
            )
            await _publish(terminal, Channel.EVENT, encode(event))

            async def opened() -> list[dict[str, Any]]:
                found = await _incidents(central)
                return [i for i in found if i["rule_id"] == "printer.not_ready"]

            # The event may come in ahead of the health report (the fast lane): it opens a
            # reported fault at once, which the rule takes over; one incident either way.
            [incident] = await async_wait_for(opened, 15, description="the rule's incident")
            assert incident["state"] == "open"
            assert len(await _incidents(central)) == 1, "one fault, one incident"
            assert "paper" in incident["cause"]
            assert incident["remedy"][0].startswith("Open the cover")
            assert incident["model"] == "PF-M100" and incident["site_id"] == "SHOP-9"

            async with central.service.engine.begin() as conn:
                viewer = await create_api_token(conn, "viewer", Role.VIEWER)
            path = f"/api/v1/incidents/{incident['id']}"
            status, _ = await _post(central, f"{path}/ack", viewer)
            assert status == 403, "a viewer cannot take an incident"
            status, acked = await _post(central, f"{path}/ack", central.token)
            assert status == 200 and acked["state"] == "acknowledged"
            status, _ = await _post(central, f"{path}/notes", central.token, {"text": "called"})
            assert status == 201

            await _publish(terminal, Channel.HEALTH, _health(3, PrinterStatus.JAM))
            await _publish(terminal, Channel.HEALTH, _health(4, PrinterStatus.OK))

            async def resolved() -> list[dict[str, Any]]:
                return [i for i in await _incidents(central) if i["state"] == "resolved"]

            [done] = await async_wait_for(resolved, 15, description="the incident resolved")
            assert done["id"] == incident["id"]

            detail = await central.get_json(path)
            assert [n["text"] for n in detail["notes"]] == ["called"]
            stats = await central.get_json("/api/v1/incidents/analytics", bucket="hour")
            assert stats["total"] >= 1
            assert {"key": "printer.not_ready", "count": 1} in stats["top"]
            assert stats["mtta_s"] is not None and stats["mttr_s"] is not None
    finally:
        terminal.close()
