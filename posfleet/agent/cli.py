"""The ``posfleet-agent`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from posfleet import __version__
from posfleet.agent.errors import AgentError
from posfleet.agent.runner import run_agent
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


def _cmd_run(args: argparse.Namespace) -> int:
    config = args.config
    if config is None and DEFAULT_CONFIG_FILE.is_file():
        config = DEFAULT_CONFIG_FILE
    settings = load_agent_settings(config)

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
