"""The ``posfleet`` command: serve, demo, simulate, db, contract, user, token, broker."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from posfleet import __version__
from posfleet.central.cli_api import register as register_api
from posfleet.central.cli_cases import register as register_cases
from posfleet.central.cli_diagnostics import register as register_diagnostics
from posfleet.central.cli_firmware import register as register_firmware
from posfleet.central.cli_knowledge import register as register_knowledge
from posfleet.central.cli_merchants import register as register_merchants
from posfleet.central.cli_reports import register as register_reports
from posfleet.central.cli_rollouts import register as register_rollouts
from posfleet.central.cli_terminals import register as register_terminals
from posfleet.central.cli_tls import register as register_tls
from posfleet.central.errors import CentralError
from posfleet.central.settings import CentralSettings, load_central_settings
from posfleet.contract import ContractError
from posfleet.store.errors import StoreError

log = logging.getLogger("posfleet")

ROLES = ("viewer", "support", "lead", "ops", "admin")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``posfleet`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # Alembic announces every plugin it loads at INFO; operators need only the migrations.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        result: int = args.func(args)
    except (CentralError, ContractError, StoreError, ValueError, OSError) as exc:
        print(f"posfleet: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posfleet", description=__doc__)
    parser.add_argument("--version", action="version", version=f"posfleet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-c", "--config", type=Path, help="TOML settings file (env wins)")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser("serve", help="run the central service (ingest + dashboard)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("demo", help="run broker, central service and a simulated fleet locally")
    p.add_argument("--terminals", type=int, default=20, help="simulated terminals (default 20)")
    p.add_argument("--port", type=int, default=8080, help="dashboard port (default 8080)")
    p.add_argument("--var-dir", type=Path, default=Path("var/demo"), help="demo state folder")
    p.add_argument(
        "--health-interval", type=int, default=10, help="seconds between health reports (10)"
    )
    p.add_argument(
        "--story-speed",
        type=_speed,
        default=1.0,
        metavar="N",
        help="play the fault storyline N times faster; the simulated terminals' clocks run"
        " N times faster too (default 1; e.g. 10 for a one-minute look or a test)",
    )
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("simulate", help="run simulated terminals with their agents")
    p.add_argument("--fleet", type=Path, required=True, help="fleet file (broker provision-fleet)")
    p.add_argument("--terminals", type=int, default=None, help="use only the first N terminals")
    p.add_argument("--broker", help="broker URL (default: the fleet file's)")
    p.add_argument("--health-interval", type=int, default=60)
    p.add_argument("--keepalive", type=int, default=30)
    p.add_argument("--state-dir", type=Path, default=Path("var/simulate"))
    p.add_argument(
        "--serial", choices=["pty", "memory"], default="pty", help="memory: no ptys (load tests)"
    )
    p.add_argument(
        "--scenario", type=Path, help="TOML scenario file played on every terminal (faults at t)"
    )
    p.add_argument(
        "--demo-story",
        action="store_true",
        help="a few faults in the first minutes (paper out, reader errors, a site's host down)",
    )
    p.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="N",
        help="time lapse: the terminals' clocks and the demo story run N times faster (1)",
    )
    p.set_defaults(func=_cmd_simulate)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(metavar="ACTION")
    p = db.add_parser("upgrade", help="create or migrate the schema to the latest revision")
    p.set_defaults(func=_cmd_db_upgrade)

    contract = sub.add_parser("contract", help="the MQTT contract").add_subparsers(metavar="ACTION")
    p = contract.add_parser("export", help="write one JSON Schema per payload into DIR")
    p.add_argument("directory", type=Path)
    p.set_defaults(func=_cmd_contract_export)

    user = sub.add_parser("user", help="staff accounts").add_subparsers(metavar="ACTION")
    p = user.add_parser("add", help="add a staff user (password from POSFLEET_PASSWORD or prompt)")
    p.add_argument("username")
    p.add_argument("--role", choices=ROLES, default="viewer")
    p.set_defaults(func=_cmd_user_add)

    token = sub.add_parser("token", help="API tokens").add_subparsers(metavar="ACTION")
    p = token.add_parser("create", help="create an API token; printed once")
    p.add_argument("name")
    p.add_argument("--role", choices=ROLES, default="viewer")
    p.set_defaults(func=_cmd_token_create)

    broker = sub.add_parser("broker", help="broker credentials and ACL").add_subparsers(
        metavar="ACTION"
    )
    p = broker.add_parser("add-terminal", help="provision one terminal; prints its password")
    p.add_argument("terminal_id")
    p.add_argument("--auth-dir", type=Path, default=Path("var/broker"))
    p.set_defaults(func=_cmd_broker_add_terminal)
    p = broker.add_parser("add-service", help="provision a central service user")
    p.add_argument("name")
    p.add_argument("--auth-dir", type=Path, default=Path("var/broker"))
    p.set_defaults(func=_cmd_broker_add_service)
    p = broker.add_parser("provision-fleet", help="provision N terminals into a fleet file")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--prefix", default="SIM")
    p.add_argument("--broker-url", default="mqtt://127.0.0.1:1883")
    p.add_argument("--auth-dir", type=Path, default=Path("var/broker"))
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_broker_provision_fleet)
    register_diagnostics(sub)
    register_firmware(sub)
    register_rollouts(sub)
    register_terminals(sub)
    register_merchants(sub)
    register_api(sub)
    register_cases(sub)
    register_reports(sub)
    register_tls(sub)
    register_knowledge(sub)
    return parser


def _speed(text: str) -> float:
    """A time-lapse factor from the command line: a number from 0.1 to 100."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text} is not from 0.1 to 100")
    return value


def _settings(args: argparse.Namespace) -> CentralSettings:
    return load_central_settings(args.config)


def _run_until_signal(coro_factory: Callable[[asyncio.Event], object]) -> int:
    """Run ``coro_factory(stop)`` and set ``stop`` on SIGINT or SIGTERM."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        result = coro_factory(stop)
        assert asyncio.iscoroutine(result)
        await result

    asyncio.run(runner())
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from posfleet.central.service import serve_forever

    settings = _settings(args)
    return _run_until_signal(lambda stop: serve_forever(settings, stop))


def _cmd_demo(args: argparse.Namespace) -> int:
    from posfleet.central.demo import DemoOptions, run_demo

    options = DemoOptions(
        terminals=args.terminals,
        port=args.port,
        var_dir=args.var_dir,
        health_interval_s=args.health_interval,
        story_speed=args.story_speed,
    )
    return _run_until_signal(lambda stop: run_demo(options, stop))


def _cmd_simulate(args: argparse.Namespace) -> int:
    from posfleet.simulator.fleet import FleetOptions, SerialMode, load_fleet_file, run_fleet
    from posfleet.simulator.scenario import load_scenario

    fleet = load_fleet_file(args.fleet)
    scenario = load_scenario(args.scenario) if args.scenario else None
    options = FleetOptions(
        broker_url=args.broker or fleet.broker_url,
        health_interval_s=args.health_interval,
        keepalive_s=args.keepalive,
        state_dir=args.state_dir,
        serial=SerialMode(args.serial),
        scenario=scenario,
        demo_story=args.demo_story,
        speed=args.speed,
        firmware_trusted_keys=fleet.firmware_trusted_keys,
    )
    terminals = fleet.terminals[: args.terminals] if args.terminals else fleet.terminals
    return _run_until_signal(lambda stop: run_fleet(terminals, options, stop))


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from posfleet.store.migrate import upgrade

    settings = _settings(args)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    print(f"database is at the latest revision: {settings.resolved_database_url}")
    return 0


def _cmd_contract_export(args: argparse.Namespace) -> int:
    from posfleet.contract.schema_export import export

    for path in export(args.directory):
        print(path)
    return 0


def _read_new_password() -> str:
    password = os.environ.get("POSFLEET_PASSWORD")
    if password:
        return password
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise CentralError("the passwords do not match")
    return first


def _cmd_user_add(args: argparse.Namespace) -> int:
    from posfleet.central.accounts_admin import add_user

    settings = _settings(args)
    asyncio.run(add_user(settings, args.username, _read_new_password(), args.role))
    print(f"user {args.username!r} added with role {args.role}")
    return 0


def _cmd_token_create(args: argparse.Namespace) -> int:
    from posfleet.central.accounts_admin import create_token

    settings = _settings(args)
    print(asyncio.run(create_token(settings, args.name, args.role)))
    return 0


def _cmd_broker_add_terminal(args: argparse.Namespace) -> int:
    from posfleet.central.broker_auth import BrokerAuthStore

    creds = BrokerAuthStore(args.auth_dir).add_terminal(args.terminal_id)
    print(f"{creds.username} {creds.password}")
    print("reload the broker (SIGHUP) to apply", file=sys.stderr)
    return 0


def _cmd_broker_add_service(args: argparse.Namespace) -> int:
    from posfleet.central.broker_auth import BrokerAuthStore

    creds = BrokerAuthStore(args.auth_dir).add_service_user(args.name)
    print(f"{creds.username} {creds.password}")
    return 0


def _cmd_broker_provision_fleet(args: argparse.Namespace) -> int:
    from posfleet.central.fleet_provisioning import provision_fleet

    path = provision_fleet(args.auth_dir, args.count, args.prefix, args.broker_url, args.out)
    print(f"{args.count} terminals provisioned; fleet file: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
