"""The ``posfleet-agent`` command.

Each subcommand imports what it needs when it runs: on a terminal every megabyte of the
daemon's resident memory counts, and ``run`` needs neither the checker nor the decoder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from posfleet import __version__
from posfleet.agent.errors import AgentError
from posfleet.agent.serial.errors import SerialLinkError
from posfleet.agent.settings import DEFAULT_CONFIG_FILE, load_agent_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``posfleet-agent`` console script."""
    parser = argparse.ArgumentParser(prog="posfleet-agent", description="posfleet terminal agent")
    parser.add_argument("--version", action="version", version=f"posfleet-agent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(metavar="COMMAND")
    run = sub.add_parser("run", help="run the agent daemon until SIGTERM")
    run.add_argument(
        "-c", "--config", type=Path, default=None, help=f"TOML file (default {DEFAULT_CONFIG_FILE})"
    )
    run.set_defaults(func=_cmd_run)
    check = sub.add_parser(
        "check", help="test the serial link and the broker login, and say what is wrong"
    )
    check.add_argument(
        "-c", "--config", type=Path, default=None, help=f"TOML file (default {DEFAULT_CONFIG_FILE})"
    )
    check.set_defaults(func=_cmd_check)
    trace = sub.add_parser("trace", help="tools for serial line captures")
    trace_sub = trace.add_subparsers(metavar="ACTION")
    trace.set_defaults(func=lambda _args: _usage(trace))
    decode = trace_sub.add_parser(
        "decode", help="hex dump of a serial capture -> one JSON object per frame/ACK/NAK/error"
    )
    decode.add_argument(
        "file", nargs="?", default="-", help="hex dump (plain, 0x.., xxd or hexdump -C); - is stdin"
    )
    decode.add_argument(
        "--tcp",
        action="store_true",
        help="the capture is ZVT over TCP/IP: unframed APDUs, no DLE/STX/ETX, CRC or ACK bytes",
    )
    decode.set_defaults(func=_cmd_trace_decode)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        result: int = args.func(args)
    except (AgentError, SerialLinkError) as exc:
        print(f"posfleet-agent: error: {exc}", file=sys.stderr)
        return 1
    return result


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _config_file(args: argparse.Namespace) -> Path | None:
    config: Path | None = args.config
    if config is None and DEFAULT_CONFIG_FILE.is_file():
        config = DEFAULT_CONFIG_FILE
    return config


def _cmd_check(args: argparse.Namespace) -> int:
    settings = load_agent_settings(_config_file(args))
    from posfleet.agent.check import run_checks

    results = asyncio.run(run_checks(settings))
    for result in results:
        print(result.line())
    failed = [r.name for r in results if not r.ok]
    if failed:
        print(f"posfleet-agent check: {len(failed)} check(s) failed: {', '.join(failed)}")
        return 1
    print("posfleet-agent check: all checks passed")
    return 0


def _cmd_trace_decode(args: argparse.Namespace) -> int:
    if args.file == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(args.file).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise AgentError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    from posfleet.agent.trace import decode_capture, decode_tcp_capture, parse_hex_dump

    decode = decode_tcp_capture if args.tcp else decode_capture
    for record in decode(parse_hex_dump(text)):
        print(json.dumps(record))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from posfleet.agent.runner import run_agent

    settings = load_agent_settings(_config_file(args))

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_agent(settings, stop)

    asyncio.run(runner())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
