"""Runners of the documented ``posfleet firmware ...`` commands (see ``RUNNERS`` in
:mod:`tests.e2e.test_documented_commands`).

The README's firmware block is one session: keygen, sign, upload, list, show, push,
actions, cancel, each using what the commands before it made. Every runner gets a fresh
workspace, so it makes its prerequisites itself, in-process, with the functions those
earlier commands call and the values the block documents for them (key id, image,
name, version, models, terminals). Then it runs its own command as the console script
and checks what the person typing it would see: the files, the store, the listing, the
Actions, the offers arriving on each terminal's own ``fw/offer`` topic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.central.broker_auth import BrokerAuthStore
from posfleet.central.firmware_admin import (
    keygen,
    load_signed_manifest,
    manifest_json,
    sign_image,
    upload_local,
)
from posfleet.central.settings import CentralSettings, load_central_settings
from posfleet.contract import Channel, FirmwareOffer, Inventory, topic
from posfleet.firmware.action_records import ActionRecord, list_actions
from posfleet.firmware.action_states import ActionState
from posfleet.firmware.artifacts import ArtifactRecord
from posfleet.firmware.download_tokens import DownloadTokens, download_path
from posfleet.firmware.offers import FirmwareOffers, PushRequest, cancel_and_audit
from posfleet.firmware.settings import FirmwareSettings
from posfleet.firmware.signing import TrustedKeys, load_private_key, load_public_key
from posfleet.simulator.firmware_images import make_image
from posfleet.store import apply_inventory
from tests.harness.command_workspace import Workspace
from tests.harness.doc_commands import DocumentedCommand, commands_in

REPO = Path(__file__).resolve().parents[2]
INSTALLED_VERSION = "5.2.1"
"""What the test terminals report running: below the documented release."""
IMAGE_SIZE = 64 * 1024
SETUP_ACTOR = "cli:doc-setup"
CENTRAL = "central"


def _option(command: DocumentedCommand, name: str) -> str:
    """The value the documentation gives option ``name``."""
    words = list(command.argv)
    assert name in words, f"{command.source}: {command.text!r} has no {name}"
    return words[words.index(name) + 1]


def _documented(command: DocumentedCommand, verb: str) -> DocumentedCommand:
    """``posfleet firmware VERB`` as run in the same file as ``command`` (its block)."""
    name = command.source.rsplit(":", 1)[0]
    for found in commands_in((REPO / name).read_text(encoding="utf-8"), name):
        if found.argv[:3] == ("posfleet", "firmware", verb) and found.not_run_reason is None:
            return found
    raise AssertionError(f"{name} runs no 'posfleet firmware {verb}' for {command.text!r}")


@dataclass(frozen=True)
class Release:
    """The key, image and signed manifest that keygen and sign, as documented, leave."""

    key_id: str
    key: Path
    public_key: Path
    image: Path
    manifest: Path
    label: str
    """``name@version``, how the later commands name the artifact."""


def _release(command: DocumentedCommand, ws: Workspace, *, signed: bool) -> Release:
    """Make, in the workspace, the key and image the block's sign command (documented
    beside ``command``) uses and, if ``signed``, the manifest it writes."""
    sign = _documented(command, "sign")
    key_id, version = _option(sign, "--key-id"), _option(sign, "--version")
    models = _option(sign, "--models").split(",")
    new_key = keygen(ws.local(_option(sign, "--key")), key_id)
    image = ws.local(sign.argv[3])
    image.write_bytes(make_image(version, IMAGE_SIZE, models=tuple(models)))
    manifest = ws.local(_option(sign, "--out"))
    if signed:
        signature = sign_image(
            image,
            key_file=new_key.private_path,
            key_id=key_id,
            name=_option(sign, "--name"),
            version=version,
            models=models,
        )
        manifest.write_text(manifest_json(signature), encoding="utf-8")
    return Release(
        key_id=key_id,
        key=new_key.private_path,
        public_key=new_key.public_path,
        image=image,
        manifest=manifest,
        label=f"{_option(sign, '--name')}@{version}",
    )


def _settings(ws: Workspace, release: Release) -> CentralSettings:
    """This workspace's central settings, trusting the release key."""
    trusted = FirmwareSettings(trusted_keys={release.key_id: release.public_key})
    return load_central_settings(None, var_dir=ws.var_dir, firmware=trusted)


async def _uploaded(command: DocumentedCommand, ws: Workspace) -> tuple[Release, ArtifactRecord]:
    """The documented release, signed and stored as an artifact (as upload does)."""
    release = _release(command, ws, signed=True)
    result = await upload_local(
        _settings(ws, release),
        release.image,
        load_signed_manifest(release.manifest),
        actor=SETUP_ACTOR,
    )
    return release, result.artifact


def _push_terminals(command: DocumentedCommand) -> list[str]:
    return _option(_documented(command, "push"), "--terminals").split(",")


async def _register(engine: AsyncEngine, terminal_ids: list[str], model: str) -> None:
    """Terminals that have reported their inventory: ``model``, on the older firmware."""
    async with engine.begin() as conn:
        for terminal_id in terminal_ids:
            inventory = Inventory(
                model=model,
                serial=f"SN-{terminal_id}",
                firmware_version=INSTALLED_VERSION,
                agent_version="1.4.0",
                ts=datetime.now(UTC),
            )
            await apply_inventory(conn, terminal_id, inventory)


async def _ready_to_push(
    command: DocumentedCommand, ws: Workspace
) -> tuple[Release, ArtifactRecord, list[str]]:
    """The artifact stored and the block's push terminals registered, of a model it names."""
    release, artifact = await _uploaded(command, ws)
    terminal_ids = _push_terminals(command)
    async with ws.engine() as engine:
        await _register(engine, terminal_ids, artifact.models[0])
    return release, artifact, terminal_ids


async def _pushed(command: DocumentedCommand, ws: Workspace) -> list[ActionRecord]:
    """What the block's push leaves: one open Action per terminal (not offered: no broker)."""
    release, artifact, terminal_ids = await _ready_to_push(command, ws)
    settings = _settings(ws, release)
    async with ws.engine() as engine:
        tokens = DownloadTokens(settings.download_token_secret())
        offers = FirmwareOffers(engine, tokens, base_url=None)
        result = await offers.push(
            PushRequest(artifact=artifact.label, terminal_ids=terminal_ids), actor=SETUP_ACTOR
        )
    assert not result.refused, result.refused
    return result.created


async def _actions(ws: Workspace) -> dict[int, ActionRecord]:
    async with ws.engine() as engine, engine.connect() as conn:
        return {a.id: a for a in await list_actions(conn)}


async def _run_refused(
    ws: Workspace, command: DocumentedCommand, env: dict[str, str]
) -> tuple[int | None, str]:
    """Run ``command`` expecting a refusal; its exit code and what it printed."""
    process = await asyncio.create_subprocess_exec(
        *ws.argv(command),
        cwd=ws.work,
        env={**ws.env, **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, (out + err).decode(errors="replace")


def _documented_trusted_keys_env() -> dict[str, str]:
    """``POSFLEET_FIRMWARE__TRUSTED_KEYS`` exactly as the README's firmware section sets it."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"`(POSFLEET_FIRMWARE__TRUSTED_KEYS)='([^']+)'`", readme)
    assert match, "README.md does not show POSFLEET_FIRMWARE__TRUSTED_KEYS='{...}'"
    return {match.group(1): match.group(2)}


# -- the runners ----------------------------------------------------------------------------


async def run_firmware_keygen(command: DocumentedCommand, ws: Workspace) -> None:
    """A 0600 private key, its public key beside it, the key id printed."""
    key_id = _option(command, "--key-id")
    out = await ws.run(command)
    assert f"release key {key_id}\n" in out, out
    private_path = ws.local(_option(command, "--out"))
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    public_path = private_path.with_suffix(".pub")
    assert f"public key:  {public_path.name}" in out, out
    public = load_public_key(public_path.read_bytes(), source=str(public_path))
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert public.public_bytes(*raw) == load_private_key(private_path).public_key().public_bytes(
        *raw
    ), "the .pub file is not the private key's public key"


async def run_firmware_sign(command: DocumentedCommand, ws: Workspace) -> None:
    """The signed manifest verifies with the public key and describes the image."""
    release = _release(command, ws, signed=False)
    out = await ws.run(command)
    assert f"signed {release.label} with key {release.key_id}" in out, out
    signed = load_signed_manifest(ws.local(_option(command, "--out")))
    manifest = TrustedKeys.from_pem_files({release.key_id: release.public_key}).verify(signed)
    image = release.image.read_bytes()
    assert manifest.size == len(image)
    assert manifest.sha256 == hashlib.sha256(image).hexdigest()
    assert f"{manifest.name}@{manifest.version}" == release.label
    assert manifest.models == _option(command, "--models").split(",")


async def run_firmware_upload(command: DocumentedCommand, ws: Workspace) -> None:
    """With the README's trusted-keys setting the image is stored and listed; a tampered
    image of the same size is refused with one line and leaves nothing behind."""
    release = _release(command, ws, signed=True)
    env = _documented_trusted_keys_env()
    assert json.loads(env["POSFLEET_FIRMWARE__TRUSTED_KEYS"]) == {
        release.key_id: release.public_key.name
    }, "the README trusts another key id or file than keygen and sign made"
    store = ws.var_dir / "artifacts"
    sha256 = load_signed_manifest(release.manifest).manifest.sha256

    tampered = release.image.with_name("tampered-" + release.image.name)
    image = bytearray(release.image.read_bytes())
    image[len(image) // 2] ^= 0xFF
    tampered.write_bytes(image)
    words = [tampered.name if w == command.argv[3] else w for w in command.argv]
    refused = dataclasses.replace(command, text=" ".join(words), argv=tuple(words))
    code, output = await _run_refused(ws, refused, env)
    assert code not in (0, None), output
    assert "Traceback" not in output and output.strip().count("\n") == 0, output
    assert output.startswith("posfleet: error: ") and "SHA-256" in output, output
    assert not store.exists() or list(store.iterdir()) == [], "a refused image left files"

    out = await ws.run(command, env=env)
    assert f"{release.label} stored: sha256 {sha256}" in out, out
    assert (store / sha256).read_bytes() == release.image.read_bytes()
    listed = await ws.run(_documented(command, "list"))
    assert [line for line in listed.splitlines() if release.label in line], listed
    assert sha256[:12] in listed, listed


async def run_firmware_list(command: DocumentedCommand, ws: Workspace) -> None:
    """The uploaded artifact, with its size, hash prefix and models."""
    _, artifact = await _uploaded(command, ws)
    out = await ws.run(command)
    (line,) = [line for line in out.splitlines() if artifact.label in line] or [out]
    assert f"#{artifact.id}" in line and artifact.sha256[:12] in line, out
    assert ",".join(artifact.models) in line, out


async def run_firmware_show(command: DocumentedCommand, ws: Workspace) -> None:
    """The artifact named: full SHA-256, size, models, the key that signed it."""
    release, artifact = await _uploaded(command, ws)
    assert command.argv[3] == artifact.label, "show names another artifact than sign made"
    out = await ws.run(command)
    assert artifact.sha256 in out and f"{artifact.size} bytes" in out, out
    assert re.search(rf"models:\s+{re.escape(', '.join(artifact.models))}\n", out), out
    assert re.search(rf"signed by key:\s+{re.escape(release.key_id)}\n", out), out


async def run_firmware_push(command: DocumentedCommand, ws: Workspace) -> None:
    """One Action per terminal, each offered at once on that terminal's ``fw/offer``."""
    _, artifact, terminal_ids = await _ready_to_push(command, ws)
    auth = BrokerAuthStore(ws.root / "broker-auth")
    central = auth.add_service_user(CENTRAL)
    logins = auth.add_terminals(terminal_ids)
    broker = ws.start_broker(auth)
    terminals = {}
    for login in logins:
        probe = ws.probe(broker, login).connect()
        assert not probe.subscribe(topic(login.username, Channel.FW_OFFER)).is_failure
        terminals[login.username] = probe
    out = await ws.run(
        command,
        env={
            "POSFLEET_BROKER_URL": broker.central_url,
            "POSFLEET_BROKER_USERNAME": central.username,
            "POSFLEET_BROKER_PASSWORD": central.password,
        },
    )
    n = len(terminal_ids)
    assert f"{artifact.label} (#{artifact.id}): {n} action(s) created, {n} offered now" in out
    actions = {a.terminal_id: a for a in (await _actions(ws)).values()}
    assert sorted(actions) == sorted(terminal_ids), actions
    start, end = _option(command, "--window").split("-")
    for terminal_id, probe in terminals.items():
        action = actions[terminal_id]
        assert action.state is ActionState.OFFERED and action.artifact_id == artifact.id
        assert (action.window.start, action.window.end) == (start, end)
        (message,) = probe.wait_for_messages(1, timeout=10)
        offer = FirmwareOffer.model_validate_json(message.payload)
        assert offer.action_id == f"{action.id}.1"
        assert offer.signed_manifest == artifact.signed_manifest
        assert offer.url.endswith(download_path(artifact.sha256))
        assert (offer.window.start, offer.window.end) == (start, end)


async def run_firmware_actions(command: DocumentedCommand, ws: Workspace) -> None:
    """Every Action with its terminal and state, and the counts per state."""
    first, *rest = await _pushed(command, ws)
    async with ws.engine() as engine:
        await cancel_and_audit(engine, first.id, actor=SETUP_ACTOR, reason="doc test")
    out = await ws.run(command)
    for action, state in [(first, "cancelled"), *((a, a.state.value) for a in rest)]:
        row = rf"#{action.id}\s+{action.terminal_id}\s+{re.escape(action.artifact_name)}@"
        assert re.search(rf"{row}\S+\s+{state}\b", out), out
    total, still_open = 1 + len(rest), len(rest)
    assert f"{total} action(s), {still_open} open: " in out, out
    assert f"created {still_open}" in out and "cancelled 1" in out, out


async def run_firmware_cancel(command: DocumentedCommand, ws: Workspace) -> None:
    """The Action given by its id ends ``cancelled``; the others stay open."""
    chosen, *others = await _pushed(command, ws)
    ws.substitutions["ID"] = str(chosen.id)
    out = await ws.run(command)
    assert f"action #{chosen.id} on {chosen.terminal_id} cancelled" in out, out
    actions = await _actions(ws)
    assert actions[chosen.id].state is ActionState.CANCELLED
    assert all(not actions[a.id].state.final for a in others)


RUNNERS = {
    "posfleet firmware keygen": run_firmware_keygen,
    "posfleet firmware sign": run_firmware_sign,
    "posfleet firmware upload": run_firmware_upload,
    "posfleet firmware list": run_firmware_list,
    "posfleet firmware show": run_firmware_show,
    "posfleet firmware push": run_firmware_push,
    "posfleet firmware actions": run_firmware_actions,
    "posfleet firmware cancel": run_firmware_cancel,
}
"""The firmware part of ``RUNNERS`` in :mod:`tests.e2e.test_documented_commands`."""
