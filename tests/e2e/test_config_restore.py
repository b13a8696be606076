"""Replacing a terminal: its backup restored onto the new one through the real system.

The central service, the broker and two simulated terminals with real agents run for
real; support staff use the API as the pages do. The old terminal's configuration was
set up by its merchant; after the restore the new terminal has the same configuration
(except its own serial number and its secrets, which never leave a terminal), and the
registry links the two both ways.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from posfleet.agent.drivers.base import ConfigBackup
from posfleet.diagnostics.remote_commands import CommandState, get_command
from tests.harness import PrivateBroker, async_wait_for
from tests.harness.central_service import CentralUnderTest, start_central
from tests.harness.firmware_release import release_key
from tests.harness.sim_fleet import SimFleet, TerminalPlan

MERCHANT_SETUP = {
    "merchant.name": "Bäckerei Lenz",
    "receipt.header": "Danke für Ihren Einkauf",
    "display.language": "de",
    "payment.tip_enabled": "true",
    "settlement.time": "21:15",
    "wifi.ssid": "lenz-kasse",
}


async def _post(central: CentralUnderTest, path: str, body: dict[str, Any]) -> Any:
    async with central.http.post(
        central.service.url + path,
        json=body,
        headers={"Authorization": f"Bearer {central.token}"},
    ) as response:
        answer = await response.json()
        assert response.status in (201, 202), answer
        return answer


def _shown(backup: ConfigBackup) -> dict[str, str]:
    return {k: v for k, v in backup.params.items() if k != "terminal.serial"}


async def test_a_backup_restored_onto_a_replacement_gives_it_the_same_configuration(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    old_id, new_id = f"SWAP-{tag}-OLD", f"SWAP-{tag}-NEW"
    url = f"sqlite+aiosqlite:///{tmp_path / 'central.db'}"
    key = release_key(tmp_path / "keys", "rel-swap")
    async with (
        start_central(broker, tmp_path / "central", url) as central,
        SimFleet(broker, tmp_path / "fleet", key) as fleet,
    ):
        old, new = await fleet.add([TerminalPlan(old_id), TerminalPlan(new_id)])
        for name, value in MERCHANT_SETUP.items():
            old.hardware.config.params[name].value = value
        new_secrets = {k: p.value for k, p in new.hardware.config.params.items() if p.secret}

        async def online(*ids: str) -> bool:
            terminals = await central.terminals()
            return all(terminals.get(t, {}).get("online") for t in ids)

        await async_wait_for(lambda: online(old_id, new_id), timeout=30, description="online")

        command = await _post(central, f"/api/v1/terminals/{old_id}/backups", {"reason": "swap"})
        backups_path = f"/api/v1/terminals/{old_id}/backups"

        async def backed_up() -> bool:
            return bool((await central.get_json(backups_path))["items"])

        await async_wait_for(backed_up, timeout=30, description="the old terminal's backup")
        (backup,) = (await central.get_json(backups_path))["items"]
        assert backup["command_id"] == command["id"]
        assert backup["params"]["merchant.name"] == "Bäckerei Lenz"
        assert set(backup["withheld"]) == {"wifi.psk", "host.tls_client_key", "admin.pin"}
        assert not set(backup["params"]) & set(backup["withheld"])  # no secret stored

        preview = await central.get_json(
            f"/api/v1/backups/{backup['id']}/preview", target_terminal_id=new_id
        )
        changed = {c["name"] for c in preview["diff"]["changes"] if c["kind"] == "set"}
        assert set(MERCHANT_SETUP) <= changed  # the new terminal has no backup to compare

        started = await _post(
            central,
            f"/api/v1/backups/{backup['id']}/restore",
            {"target_terminal_id": new_id, "reason": "card reader broken, terminal swapped"},
        )
        assert started["restore"]["source_terminal_id"] == old_id

        async def linked() -> bool:
            body = await central.get_json(backups_path)
            return bool(body["links"]["replaced_by"] == new_id)

        await async_wait_for(linked, timeout=30, description="the registry's replacement link")
        links = (await central.get_json(f"/api/v1/terminals/{new_id}/backups"))["links"]
        assert links["replaces"] == old_id
        async with central.service.engine.connect() as conn:
            restore = await get_command(conn, started["command"]["id"])
        assert restore is not None and restore.state is CommandState.DONE, restore

        # The terminals themselves: the same configuration, each its own serial and secrets.
        assert _shown(new.hardware.config.backup()) == _shown(old.hardware.config.backup())
        assert new.hardware.config.params["terminal.serial"].value == f"SN-{new_id}"
        assert {
            k: p.value for k, p in new.hardware.config.params.items() if p.secret
        } == new_secrets
