"""``posfleet demo``: a private broker, the central service and a simulated fleet, locally.

Everything it starts it also stops, on Ctrl-C or SIGTERM: the simulated fleet runs in a
child process of its own process group, the broker is a child ``mosquitto``, and the
central service runs in this process. Besides the storyline of faults the simulated
fleet plays, this process rolls a firmware release out in waves and pilots a release
candidate on cue (:mod:`posfleet.central.demo_firmware`,
:mod:`posfleet.central.demo_rollouts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shlex
import signal
import sys
import textwrap
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from posfleet.central.broker_auth import BrokerAuthStore
from posfleet.central.demo_cases import start_demo_cases
from posfleet.central.demo_firmware import (
    IMAGE_NAME,
    PILOT_VERSION,
    ReleaseKey,
    build_demo_images,
    cancel_leftover_actions,
    demo_release_key,
    forget_earlier_updates,
    upload_demo_images,
)
from posfleet.central.demo_rollouts import (
    DemoPace,
    DemoRollout,
    abort_leftover_rollouts,
    create_demo_rollouts,
    start_on_cue,
)
from posfleet.central.fleet_provisioning import provision_fleet, record_demo_merchants
from posfleet.central.mosquitto import MosquittoBroker
from posfleet.central.service import RunningCentral, running_central
from posfleet.central.settings import CentralSettings
from posfleet.contract import utcnow
from posfleet.dashboard.firmware_actions_api import FIRMWARE_OFFERS_KEY
from posfleet.dashboard.rollouts_page import FIRMWARE_PATH
from posfleet.firmware.settings import FirmwareSettings
from posfleet.simulator.fleet_file import FleetTerminal, load_fleet_file, write_fleet_file
from posfleet.store.accounts import Role, create_api_token, create_user
from posfleet.store.engine import create_engine
from posfleet.store.migrate import upgrade_engine

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
    story_speed: float = 1.0
    """Play the fault storyline (and the terminals' clocks) this many times faster."""


def posfleet_command() -> list[str]:
    """How to run ``posfleet`` as this process was: the script beside this interpreter.

    ``make demo`` runs the demo from ``.venv`` without putting it on the PATH, so the
    banner names the script by its absolute path; without one (run from a source tree
    with ``python -m``), it names the interpreter and the module instead.
    """
    # Not resolved: a venv's python is a symlink, and the script lives beside the link.
    bin_dir = Path(sys.executable).absolute().parent
    script = bin_dir / "posfleet"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(Path(sys.executable).absolute()), "-m", "posfleet.central.cli"]


def _demo_command(var_dir: Path, *args: str) -> str:
    words = [f"POSFLEET_VAR_DIR={shlex.quote(str(var_dir))}"]
    words += [shlex.quote(w) for w in [*posfleet_command(), *args]]
    return " ".join(words)


def incidents_command(var_dir: Path) -> str:
    """A shell command that lists the demo's open incidents, runnable as printed."""
    return _demo_command(var_dir, "incidents", "list")


def firmware_actions_command(var_dir: Path) -> str:
    """A shell command that lists the demo's firmware Actions, runnable as printed."""
    return _demo_command(var_dir, "firmware", "actions")


def rollout_command(var_dir: Path, rollout_id: int) -> str:
    """A shell command that follows a demo rollout wave by wave, runnable as printed."""
    return _demo_command(var_dir, "rollout", "watch", str(rollout_id))


def _fill(text: str) -> str:
    return textwrap.fill(text, width=80, break_long_words=False, break_on_hyphens=False)


def firmware_story(rollouts: list[DemoRollout], url: str, var_dir: Path) -> str:
    """What the banner says about the rollouts: what goes where, in which waves, and where
    to watch them: the Firmware page, and commands runnable as printed."""
    release = next((r for r in rollouts if r.version != PILOT_VERSION), None)
    pilot = next((r for r in rollouts if r.version == PILOT_VERSION), None)
    if release is None and pilot is None:
        return _fill("The demo's firmware could not be rolled out (see the log above).") + "\n"
    parts = []
    if release is not None:
        count = len(release.terminal_ids)
        waves = ", then ".join(release.waves)
        parts.append(
            f"After a minute the demo's admin starts rollout #{release.rollout_id}:"
            f" {IMAGE_NAME} {release.version} to the {count} terminal{'s' if count != 1 else ''}"
            f" at {release.site_id}, in waves ({waves}); each terminal reboots into it once"
            " its shop has closed and settled the batch, and each wave soaks and passes a"
            " business-health gate before the next."
        )
    if pilot is not None:
        parts.append(
            f"Rollout #{pilot.rollout_id} pilots a release candidate at {pilot.site_id}:"
            " it boot-loops on the canary, which rolls back on its own, and the rollout"
            " pauses itself before any other terminal gets it."
        )
    shown = release or pilot
    assert shown is not None
    return (
        "\n".join(_fill(p) for p in parts)
        + f"\nWatch them on the Firmware page, {url}{FIRMWARE_PATH}, or with:"
        + f"\n  {rollout_command(var_dir, shown.rollout_id)}"
        + "\nEach terminal's update is a firmware Action; see them with"
        + f"\nGET {url}/api/v1/firmware/actions or with:"
        + f"\n  {firmware_actions_command(var_dir)}\n"
    )


async def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")


async def _create_demo_accounts(settings: CentralSettings, var_dir: Path) -> tuple[str, str]:
    """An admin API token and an admin login for the demo, both written to ``var_dir``;
    the login's user name and password."""
    password = secrets.token_urlsafe(12)
    engine = create_engine(settings.resolved_database_url)
    try:
        async with engine.begin() as conn:
            token = await create_api_token(conn, f"demo-{secrets.token_hex(3)}", Role.ADMIN)
            username = f"admin-{secrets.token_hex(2)}"
            await create_user(conn, username, password, Role.ADMIN)
            await record_demo_merchants(conn)
    finally:
        await engine.dispose()
    await _write_secret(var_dir / "api-token", token)
    await _write_secret(var_dir / "admin-login", f"{username} {password}")
    return username, password


async def run_demo(options: DemoOptions, stop: asyncio.Event) -> None:
    """Run the demo until ``stop`` is set, then stop everything it started."""
    if options.story_speed <= 0:
        raise ValueError(f"the story speed must be above 0, not {options.story_speed}")
    var_dir = options.var_dir.resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    pace = DemoPace(options.story_speed, options.health_interval_s)
    release_key = demo_release_key(var_dir / "firmware")
    images = build_demo_images(var_dir / "firmware", release_key)
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
        terminals = _trust_in_fleet_file(fleet_file, release_key)
        broker.reload()
        settings = CentralSettings(
            var_dir=var_dir,
            broker_url=broker.central_url,
            broker_username=central_creds.username,
            broker_password=central_creds.password,
            http_port=options.port,
            client_id="posfleet-demo-central",
            firmware=FirmwareSettings(trusted_keys={release_key.key_id: release_key.public_path}),
            rollout_interval_s=pace.runner_interval_s,
            rollout_joiner_scan_s=pace.joiner_scan_s,
        )
        await upload_demo_images(settings, images)
        await _abort_earlier_rollouts(settings)
        async with running_central(settings) as central:
            username, password = await _create_demo_accounts(settings, var_dir)
            admin = f"user:{username}"  # as the dashboard names its users
            rollouts = await _prepare_firmware(central, terminals, var_dir, admin, pace)
            began = utcnow()
            fleet = await _start_fleet(fleet_file, options, var_dir)
            start_demo_cases(central.engine, terminals, actor=admin, speed=pace.speed)
            rolling = asyncio.create_task(
                _roll_out(central, rollouts, admin, pace, began), name="demo-firmware"
            )
            token_arg = shlex.quote(str(var_dir / "api-token"))
            speed = (
                f"The storyline and the terminals' clocks run {options.story_speed:g} times"
                f" faster (--story-speed {options.story_speed:g}).\n"
                if options.story_speed != 1
                else ""
            )
            try:
                print(
                    f"\nposfleet demo is running: {options.terminals} simulated terminals\n"
                    f"  dashboard:  {central.url}/   (login: {username} / {password})\n"
                    f'  API:        curl -H "Authorization: Bearer $(cat {token_arg})" '
                    f"{central.url}/api/v1/terminals\n"
                    f"  broker:     {broker.url}\n"
                    "Within the first minutes one terminal runs out of paper, one card reader\n"
                    "starts failing and one site loses its acquirer host. See the incidents on\n"
                    f"the dashboard's Incidents page, with GET {central.url}/api/v1/incidents,\n"
                    "or with:\n"
                    f"  {incidents_command(var_dir)}\n"
                    f"{firmware_story(rollouts, central.url, var_dir)}"
                    f"{speed}"
                    "Press Ctrl-C to stop.\n",
                    flush=True,
                )
                await _wait_stop_or_exit(stop, fleet)
            finally:
                rolling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await rolling
                await _stop_fleet(fleet)
    print("posfleet demo stopped", flush=True)


def _trust_in_fleet_file(fleet_file: Path, key: ReleaseKey) -> list[FleetTerminal]:
    """Make the simulated agents trust the demo's release key; the fleet's terminals."""
    fleet = load_fleet_file(fleet_file)
    trusted = fleet.model_copy(update={"firmware_trusted_keys": {key.key_id: key.public_path}})
    write_fleet_file(fleet_file, trusted)
    return list(fleet.terminals)


async def _abort_earlier_rollouts(settings: CentralSettings) -> None:
    """Abort what an earlier run left unfinished, before this run's rollout runner starts
    (it would go on with an earlier run's waves, on terminals that start afresh)."""
    engine = create_engine(settings.resolved_database_url)
    try:
        await upgrade_engine(engine)
        aborted = await abort_leftover_rollouts(engine)
    finally:
        await engine.dispose()
    if aborted:
        log.info("demo: aborted %d rollout(s) an earlier run left unfinished", aborted)


async def _prepare_firmware(
    central: RunningCentral,
    terminals: list[FleetTerminal],
    var_dir: Path,
    admin: str,
    pace: DemoPace,
) -> list[DemoRollout]:
    """Clear the Actions an earlier run left, then create today's rollouts as drafts."""
    offers = central.app[FIRMWARE_OFFERS_KEY]
    await cancel_leftover_actions(offers, [t.terminal_id for t in terminals])
    forget_earlier_updates(var_dir / "fleet-state")
    return await create_demo_rollouts(central.engine, terminals, actor=admin, pace=pace)


async def _roll_out(
    central: RunningCentral,
    rollouts: list[DemoRollout],
    admin: str,
    pace: DemoPace,
    began: datetime,
) -> None:
    try:
        await start_on_cue(
            central.engine,
            rollouts,
            actor=admin,
            pace=pace,
            since=began,
            wake=central.rollout_runner.wake,
        )
    except Exception:
        # The firmware part of the story must not take the rest of the demo down.
        log.exception("the demo's firmware rollouts failed")


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
        "--speed",
        str(options.story_speed),
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
