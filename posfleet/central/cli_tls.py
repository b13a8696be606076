"""``posfleet tls ...``: a private CA and its certificates, for a test or small deployment.

``make-ca`` writes ``ca.pem`` and ``ca.key`` into a folder; ``make-server-cert`` and
``make-client-cert`` sign with that CA. See docs/operations-tls.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Add the ``tls`` command group to the ``posfleet`` parser's subparsers."""
    tls = sub.add_parser(
        "tls", help="certificates: a private CA, broker/dashboard and terminal certs"
    ).add_subparsers(metavar="ACTION")

    p = tls.add_parser("make-ca", help="make a CA: DIR/ca.pem (trust it) and DIR/ca.key (0600)")
    p.add_argument("--ca-dir", type=Path, required=True, help="folder for ca.pem and ca.key")
    p.add_argument("--name", default="posfleet CA", help="the CA's common name")
    p.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    p.add_argument("--force", action="store_true", help="replace a CA already in the folder")
    p.set_defaults(func=_cmd_make_ca)

    p = tls.add_parser("make-server-cert", help="a broker or dashboard certificate")
    p.add_argument("--ca-dir", type=Path, required=True, help="folder made by tls make-ca")
    p.add_argument(
        "--host",
        action="append",
        required=True,
        help="a host name or IP address clients connect to (repeat for more)",
    )
    p.add_argument("--out", type=Path, required=True, help="certificate file; key beside it")
    p.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
    p.set_defaults(func=_cmd_make_server_cert)

    p = tls.add_parser("make-client-cert", help="a terminal's client certificate (CN = its id)")
    p.add_argument("--ca-dir", type=Path, required=True, help="folder made by tls make-ca")
    p.add_argument("--terminal-id", required=True, help="the terminal id, also its MQTT username")
    p.add_argument("--out", type=Path, required=True, help="certificate file; key beside it")
    p.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
    p.set_defaults(func=_cmd_make_client_cert)


def _key_path(cert_path: Path) -> Path:
    return cert_path.with_suffix(".key")


def _cmd_make_ca(args: argparse.Namespace) -> int:
    from posfleet.central.errors import TlsMaterialError
    from posfleet.central.tls_material import CaFiles, describe, make_ca

    files = CaFiles(args.ca_dir)
    if files.key_path.exists() and not args.force:
        raise TlsMaterialError(
            f"{files.key_path} exists; certificates it signed would stop being trusted. "
            "Use --force to replace it"
        )
    ca = make_ca(args.name, days=args.days)
    ca.write(files.cert_path, files.key_path)
    print(f"CA {describe(ca)}: {files.cert_path} (key {files.key_path})")
    return 0


def _cmd_make_server_cert(args: argparse.Namespace) -> int:
    from posfleet.central.tls_material import CaFiles, describe, load_ca, make_server_cert

    issued = make_server_cert(load_ca(CaFiles(args.ca_dir)), args.host, days=args.days)
    issued.write(args.out, _key_path(args.out))
    print(f"server certificate {describe(issued)}: {args.out} (key {_key_path(args.out)})")
    return 0


def _cmd_make_client_cert(args: argparse.Namespace) -> int:
    from posfleet.central.tls_material import CaFiles, describe, load_ca, make_client_cert
    from posfleet.contract import validate_terminal_id

    terminal_id = validate_terminal_id(args.terminal_id)
    issued = make_client_cert(load_ca(CaFiles(args.ca_dir)), terminal_id, days=args.days)
    issued.write(args.out, _key_path(args.out))
    print(f"client certificate {describe(issued)}: {args.out} (key {_key_path(args.out)})")
    return 0
