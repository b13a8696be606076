"""``posfleet demo``: a private broker, the central service and a simulated fleet, locally.

Everything it starts it also stops, on Ctrl-C or SIGTERM: the simulated fleet runs in a
child process of its own process group, the broker is a child ``mosquitto``, and the
central service runs in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from posfleet.central.broker_auth import BrokerAuthStore
from posfleet.central.fleet_provisioning import provision_fleet
from posfleet.central.mosquitto import MosquittoBroker
from posfleet.central.service import running_central
from posfleet.central.settings import CentralSettings
from posfleet.store.accounts import Role, create_api_token, create_user
from posfleet.store.engine import create_engine

log = logging.getLogger(__name__)

FLEET_STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What ``posfleet demo`` was asked for."""

    terminals: int = 20
    port: int = 8080
    var_dir: Path = Path("var/demo")
    health_interval_s: int = 10
    keepalive_s: int = 15
    broker_port: int = 0


async def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")


async def _create_demo_accounts(settings: CentralSettings, var_dir: Path) -> tuple[str, str]:
    """An admin API token and an admin login for the demo; both written to ``var_dir``."""
    password = secrets.token_urlsafe(12)
    engine = create_engine(settings.resolved_database_url)
    try:
        async with engine.begin() as conn:
            token = await create_api_token(conn, f"demo-{secrets.token_hex(3)}", Role.ADMIN)
            username = f"admin-{secrets.token_hex(2)}"
            await create_user(conn, username, password, Role.ADMIN)
    finally:
        await engine.dispose()
    await _write_secret(var_dir / "api-token", token)
    await _write_secret(var_dir / "admin-login", f"{username} {password}")
    return token, f"{username} / {password}"


async def run_demo(options: DemoOptions, stop: asyncio.Event) -> None:
    """Run the demo until ``stop`` is set, then stop everything it started."""
    var_dir = options.var_dir.resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    broker_dir = var_dir / "broker"
    auth = BrokerAuthStore(broker_dir / "auth")
    central_creds = auth.add_service_user("central")

    with MosquittoBroker(
        broker_dir, port=options.broker_port, auth_dir=broker_dir / "auth"
    ) as broker:
        fleet_file = provision_fleet(
            broker_dir / "auth",
            options.terminals,
            "DEMO",
            broker.url,
            var_dir / "fleet.json",
        )
        broker.reload()
        settings = CentralSettings(
            var_dir=var_dir,
            broker_url=broker.url,
            broker_username=central_creds.username,
            broker_password=central_creds.password,
            http_port=options.port,
            client_id="posfleet-demo-central",
        )
        async with running_central(settings) as central:
            _token, login = await _create_demo_accounts(settings, var_dir)
            fleet = await _start_fleet(fleet_file, options, var_dir)
            token_file = var_dir / "api-token"
            try:
                print(
                    f"\nposfleet demo is running: {options.terminals} simulated terminals\n"
                    f"  dashboard:  {central.url}/   (login: {login})\n"
                    f'  API:        curl -H "Authorization: Bearer $(cat {token_file})" '
                    f"{central.url}/api/v1/terminals\n"
                    f"  broker:     {broker.url}\n"
                    "Within the first minutes one terminal runs out of paper, one card reader\n"
                    "starts failing and one site loses its acquirer host: see the incidents\n"
                    f"(GET {central.url}/api/v1/incidents, or\n"
                    f"  POSFLEET_VAR_DIR={var_dir} posfleet incidents list).\n"
                    "Press Ctrl-C to stop.\n",
                    flush=True,
                )
                await _wait_stop_or_exit(stop, fleet)
            finally:
                await _stop_fleet(fleet)
    print("posfleet demo stopped", flush=True)


async def _start_fleet(
    fleet_file: Path, options: DemoOptions, var_dir: Path
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "posfleet.central.cli",
        "simulate",
        "--fleet",
        str(fleet_file),
        "--health-interval",
        str(options.health_interval_s),
        "--keepalive",
        str(options.keepalive_s),
        "--state-dir",
        str(var_dir / "fleet-state"),
        "--demo-story",
        start_new_session=True,
    )


async def _wait_stop_or_exit(stop: asyncio.Event, fleet: asyncio.subprocess.Process) -> None:
    stop_task = asyncio.create_task(stop.wait(), name="demo-stop")
    fleet_task = asyncio.create_task(fleet.wait(), name="demo-fleet")
    done, pending = await asyncio.wait({stop_task, fleet_task}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if fleet_task in done:
        log.error("the simulated fleet exited with status %s; stopping the demo", fleet.returncode)


async def _stop_fleet(fleet: asyncio.subprocess.Process) -> None:
    if fleet.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(fleet.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(fleet.wait(), FLEET_STOP_TIMEOUT_S)
    except TimeoutError:
        log.warning("simulated fleet did not stop in %.0f s; killing it", FLEET_STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(fleet.pid, signal.SIGKILL)
        await fleet.wait()
