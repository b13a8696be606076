"""``posfleet firmware keygen|sign|upload|list|show`` as ops runs them, on real files and SQLite."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.central.cli import main
from posfleet.contract import SignedManifest
from posfleet.dashboard import create_app
from posfleet.dashboard.firmware_download import FirmwareDelivery
from posfleet.firmware.artifact_store import ArtifactStore
from posfleet.firmware.download_tokens import DownloadTokens
from posfleet.firmware.signing import TrustedKeys
from posfleet.store.accounts import Role, create_api_token
from tests.harness.firmware_release import image_bytes, release_key

IMAGE = image_bytes(2 * 1024 * 1024 + 5)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POSFLEET_VAR_DIR", str(tmp_path / "var"))
    (tmp_path / "pos-os-5.3.0.bin").write_bytes(IMAGE)
    (tmp_path / "notes.txt").write_text("Printer jam fix.\n", encoding="utf-8")
    yield tmp_path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _keygen_and_sign(capsys: pytest.CaptureFixture[str], **extra: str) -> SignedManifest:
    assert _run(capsys, "firmware", "keygen", "--out", "release.key", "--key-id", "rel-1")[0] == 0
    argv = ["firmware", "sign", "pos-os-5.3.0.bin", "--key", "release.key", "--key-id", "rel-1"]
    argv += ["--name", "pos-os", "--version", "5.3.0", "--models", "V400m,P630"]
    argv += ["--notes", "notes.txt", "--out", "signed.json"]
    for flag, value in extra.items():
        argv += [flag, value]
    code, out, err = _run(capsys, *argv)
    assert code == 0, err
    assert "signed pos-os@5.3.0 with key rel-1" in out
    return SignedManifest.model_validate_json(Path("signed.json").read_bytes())


def test_keygen_writes_a_private_key_only_its_owner_reads(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "firmware", "keygen", "--out", "keys/release.key")
    assert code == 0
    assert stat.S_IMODE((workdir / "keys/release.key").stat().st_mode) == 0o600
    assert (workdir / "keys/release.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert "release key release-" in out
    assert "[firmware.trusted_keys]" in out and str(workdir / "keys/release.pub") in out
    code, _, err = _run(capsys, "firmware", "keygen", "--out", "keys/release.key")
    assert code == 1 and "already exists" in err


def test_sign_produces_a_manifest_the_public_key_verifies(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signed = _keygen_and_sign(capsys, **{"--min-version": "5.0.0"})
    trusted = TrustedKeys.from_pem_files({"rel-1": workdir / "release.pub"})
    manifest = trusted.verify(signed)
    assert (manifest.size, manifest.models, manifest.min_version) == (
        len(IMAGE),
        ["V400m", "P630"],
        "5.0.0",
    )
    assert manifest.release_notes == "Printer jam fix.\n"


def test_sign_refuses_a_version_that_is_not_semver(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(capsys, "firmware", "keygen", "--out", "release.key", "--key-id", "rel-1")
    code, _, err = _run(
        capsys, "firmware", "sign", "pos-os-5.3.0.bin", "--key", "release.key", "--key-id",
        "rel-1", "--name", "pos-os", "--version", "five", "--models", "V400m", "--out", "s.json",
    )  # fmt: skip
    assert code == 1 and "version" in err and not Path("s.json").exists()


def test_upload_list_show_round_trip(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    signed = _keygen_and_sign(capsys)
    monkeypatch.setenv("POSFLEET_FIRMWARE__TRUSTED_KEYS", json.dumps({"rel-1": "release.pub"}))
    code, out, err = _run(
        capsys, "firmware", "upload", "pos-os-5.3.0.bin", "--manifest", "signed.json"
    )
    assert code == 0, err
    assert "artifact #1 pos-os@5.3.0 stored" in out
    assert (workdir / "var/artifacts" / signed.manifest.sha256).read_bytes() == IMAGE
    code, out, _ = _run(
        capsys, "firmware", "upload", "pos-os-5.3.0.bin", "--manifest", "signed.json"
    )
    assert code == 0 and "already stored" in out
    # The same manifest with another file of the same size is no duplicate: refused.
    Path("tampered.bin").write_bytes(bytes(len(IMAGE)))
    code, _, err = _run(capsys, "firmware", "upload", "tampered.bin", "--manifest", "signed.json")
    assert code == 1 and "is not the image of this manifest" in err and "Traceback" not in err
    code, out, _ = _run(capsys, "firmware", "list")
    assert out.count("pos-os@5.3.0") == 1 and "V400m,P630" in out
    for ref in ("1", "pos-os@5.3.0", signed.manifest.sha256[:8]):
        code, out, _ = _run(capsys, "firmware", "show", ref)
        assert code == 0 and signed.manifest.sha256 in out and "Printer jam fix." in out
    code, out, _ = _run(capsys, "firmware", "show", "pos-os@5.3.0", "--json")
    assert json.loads(out)["key_id"] == "rel-1"


@pytest.mark.parametrize("case", ["no-keys", "revoked", "stranger", "resized", "corrupt"])
def test_upload_refuses_what_does_not_verify(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    _keygen_and_sign(capsys)
    keys = {"rel-1": "release.pub"}
    if case == "stranger":
        keys = {"rel-1": str(release_key(workdir / "other", "rel-1").public_path)}
    if case != "no-keys":
        monkeypatch.setenv("POSFLEET_FIRMWARE__TRUSTED_KEYS", json.dumps(keys))
    if case == "revoked":
        monkeypatch.setenv("POSFLEET_FIRMWARE__REVOKED_KEY_IDS", '["rel-1"]')
    image = workdir / "pos-os-5.3.0.bin"
    if case == "resized":
        image.write_bytes(IMAGE[:-1])
    if case == "corrupt":
        image.write_bytes(IMAGE[:-1] + b"\x00")
    code, _, err = _run(capsys, "firmware", "upload", str(image), "--manifest", "signed.json")
    expected = {
        "no-keys": "no release key is configured",
        "revoked": "is revoked",
        "stranger": "does not verify",
        "resized": "has 2097156 bytes but its manifest declares 2097157",
        "corrupt": "SHA-256 is",
    }[case]
    assert code == 1 and expected in err
    assert (
        not any((workdir / "var/artifacts").glob("*"))
        if (workdir / "var/artifacts").exists()
        else True
    )
    _run(capsys, "firmware", "list")


async def test_upload_through_the_api_of_a_running_service(
    workdir: Path, sqlite_engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    _keygen_and_sign(capsys)
    store = ArtifactStore(workdir / "server-artifacts")
    delivery = FirmwareDelivery(
        store=store,
        trusted=TrustedKeys.from_pem_files({"rel-1": workdir / "release.pub"}),
        tokens=DownloadTokens(bytes(32)),
    )
    async with sqlite_engine.begin() as conn:
        token = await create_api_token(conn, "release-bot", Role.OPS)
    server = TestServer(create_app(sqlite_engine, session_secret=bytes(32), firmware=delivery))
    await server.start_server()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "posfleet.central.cli", "firmware", "upload", "pos-os-5.3.0.bin",
            "--manifest", "signed.json", "--server", str(server.make_url("/")),
            env={**os.environ, "POSFLEET_API_TOKEN": token},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        await server.close()
    assert process.returncode == 0, err.decode()
    assert "pos-os@5.3.0 stored" in out.decode()
    signed = SignedManifest.model_validate_json((workdir / "signed.json").read_bytes())
    assert store.blob(signed.manifest.sha256).read_bytes() == IMAGE
