"""``posfleet firmware ...``: release keys, signing, artifacts (and, from
:mod:`posfleet.central.cli_firmware_actions`, pushes and Actions).

Heavy modules (SQLAlchemy, aiohttp, rich) are imported by the commands that need them,
so building the parser keeps ``posfleet --help`` quick.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posfleet.central.cli_firmware_actions import register as register_actions
from posfleet.central.settings import CentralSettings, load_central_settings

if TYPE_CHECKING:
    from posfleet.firmware.artifacts import ArtifactRecord

TOKEN_ENV = "POSFLEET_API_TOKEN"


def register(sub: Any) -> None:
    """Add the ``firmware`` command group to the ``posfleet`` parser's subparsers."""
    fw = sub.add_parser(
        "firmware", help="signed firmware: release keys, artifacts, pushes to terminals"
    ).add_subparsers(metavar="ACTION")

    p = fw.add_parser("keygen", help="make an Ed25519 release key (offline; private key 0600)")
    p.add_argument("--out", type=Path, required=True, help="private key file, e.g. release.key")
    p.add_argument("--key-id", help="name of the key in manifests (default: from its hash)")
    p.set_defaults(func=_cmd_keygen)

    p = fw.add_parser("sign", help="sign an image's manifest with a release key (offline)")
    p.add_argument("image", type=Path)
    p.add_argument("--key", type=Path, required=True, help="private key from firmware keygen")
    p.add_argument("--key-id", required=True, help="the key id printed by firmware keygen")
    p.add_argument("--name", required=True, help="firmware name, e.g. pos-os")
    p.add_argument("--version", required=True, help="semantic version, e.g. 5.3.0")
    p.add_argument("--models", required=True, help="comma-separated terminal models")
    p.add_argument("--min-version", help="oldest firmware version this image may update from")
    p.add_argument(
        "--allow-downgrade", action="store_true", help="terminals on a newer version may take it"
    )
    p.add_argument("--notes", type=Path, help="release notes file (text, 4000 characters)")
    p.add_argument("--out", type=Path, required=True, help="signed manifest JSON to write")
    p.set_defaults(func=_cmd_sign)

    p = fw.add_parser("upload", help="store a signed image as an artifact")
    p.add_argument("image", type=Path)
    p.add_argument("--manifest", type=Path, required=True, help="from firmware sign")
    p.add_argument("--reason", default="", help="why, for the audit log")
    p.add_argument(
        "--server",
        help=f"upload through this central service's API (ops token in ${TOKEN_ENV}); "
        "default: into this installation's var dir and database",
    )
    p.set_defaults(func=_cmd_upload)

    p = fw.add_parser("list", help="artifacts, newest first")
    p.add_argument("--name", help="only this firmware name")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(func=_cmd_list)

    p = fw.add_parser("show", help="one artifact: by id, name@version or SHA-256 prefix")
    p.add_argument("artifact")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_show)

    register_actions(fw)
    for parser in fw.choices.values():
        func = parser.get_default("func")
        if func is not None and not getattr(func, "_guarded", False):
            parser.set_defaults(func=_explained(func))


def _explained(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn a firmware error (bad signature, wrong image ...) into one error line, exit 1."""

    def run(args: argparse.Namespace) -> int:
        from posfleet.firmware.errors import FirmwareError

        try:
            return func(args)
        except FirmwareError as exc:
            print(f"posfleet: error: {exc}", file=sys.stderr)
            return 1

    run._guarded = True  # type: ignore[attr-defined]
    return run


def _settings(args: argparse.Namespace) -> CentralSettings:
    return load_central_settings(args.config)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _cmd_keygen(args: argparse.Namespace) -> int:
    from posfleet.central.firmware_admin import keygen

    key = keygen(args.out, args.key_id)
    public = key.public_path.resolve()
    print(f"release key {key.key_id}")
    print(f"  private key: {key.private_path} (mode 0600; keep it offline, never on the")
    print("               central service or a terminal; back it up)")
    print(f"  public key:  {key.public_path}")
    print(f"  public key (base64, raw Ed25519): {key.public_base64}")
    print("trust it on the central service, in its TOML settings file:")
    print("  [firmware.trusted_keys]")
    print(f'  {key.key_id} = "{public}"')
    print(f"or POSFLEET_FIRMWARE__TRUSTED_KEYS='{json.dumps({key.key_id: str(public)})}'")
    print("and on every agent, in its settings file (agent.toml):")
    print("  [firmware_trusted_keys]")
    print(f'  {key.key_id} = "/etc/posfleet/{key.public_path.name}"')
    print("see docs/firmware.md, key handling and rotation")
    return 0


def _cmd_sign(args: argparse.Namespace) -> int:
    from posfleet.central.firmware_admin import byte_progress, manifest_json, sign_image

    notes = args.notes.read_text(encoding="utf-8") if args.notes else ""
    total = args.image.stat().st_size if args.image.is_file() else 0
    with byte_progress(f"hashing {args.image.name}", total) as progress:
        signed = sign_image(
            args.image,
            key_file=args.key,
            key_id=args.key_id,
            name=args.name,
            version=args.version,
            models=args.models.split(","),
            min_version=args.min_version,
            allow_downgrade=args.allow_downgrade,
            release_notes=notes,
            progress=progress,
        )
    args.out.write_text(manifest_json(signed), encoding="utf-8")
    m = signed.manifest
    print(f"signed {m.name}@{m.version} with key {signed.key_id}: {args.out}")
    print(f"  sha256 {m.sha256}  size {m.size}  models {','.join(m.models)}")
    return 0


def _cmd_upload(args: argparse.Namespace) -> int:
    from posfleet.central.firmware_admin import (
        FirmwareAdminError,
        byte_progress,
        load_signed_manifest,
        upload_local,
        upload_remote,
    )

    signed = load_signed_manifest(args.manifest)
    label = f"uploading {signed.manifest.name}@{signed.manifest.version}"
    with byte_progress(label, signed.manifest.size) as progress:
        if args.server:
            token = os.environ.get(TOKEN_ENV, "").strip()
            if not token:
                raise FirmwareAdminError(
                    f"set {TOKEN_ENV} to an ops API token (posfleet token create NAME --role ops)"
                )
            record, created = asyncio.run(
                upload_remote(
                    args.server, token, args.image, signed, reason=args.reason, progress=progress
                )
            )
        else:
            result = asyncio.run(
                upload_local(
                    _settings(args),
                    args.image,
                    signed,
                    actor=_actor(),
                    reason=args.reason,
                    progress=progress,
                )
            )
            record, created = result.artifact, result.created
    verb = "stored" if created else "already stored (nothing to do)"
    print(f"artifact #{record.id} {record.label} {verb}: sha256 {record.sha256}")
    return 0


def _line(record: ArtifactRecord) -> str:
    return (
        f"#{record.id:<5} {record.label:<28} {_size(record.size):>10}  {record.sha256[:12]}  "
        f"{','.join(record.models):<20} {record.uploaded_at:%Y-%m-%d %H:%M}  {record.uploaded_by}"
    )


def _cmd_list(args: argparse.Namespace) -> int:
    from posfleet.central.firmware_admin import list_local

    records = asyncio.run(list_local(_settings(args), args.name, max(1, args.limit)))
    if args.json:
        for record in records:
            print(record.model_dump_json())
        return 0
    if not records:
        print("no artifacts yet: posfleet firmware upload IMAGE --manifest SIGNED.json")
        return 0
    for record in records:
        print(_line(record))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from posfleet.central.firmware_admin import find_local
    from posfleet.firmware.download_tokens import download_path

    settings = _settings(args)
    record = asyncio.run(find_local(settings, args.artifact))
    if args.json:
        print(record.model_dump_json())
        return 0
    print(_line(record))
    print(f"  sha256:          {record.sha256}")
    print(f"  size:            {record.size} bytes")
    print(f"  models:          {', '.join(record.models)}")
    print(f"  min version:     {record.min_version or '(any)'}")
    print(f"  allow downgrade: {'yes' if record.allow_downgrade else 'no'}")
    print(f"  signed by key:   {record.key_id}")
    print(f"  download:        {settings.firmware_base_url}{download_path(record.sha256)}")
    if record.release_notes:
        print("  release notes:")
        for line in record.release_notes.splitlines():
            print(f"    {line}")
    sys.stdout.flush()
    return 0
