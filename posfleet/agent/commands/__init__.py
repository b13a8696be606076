"""Remote commands: the whitelist, argument validation, handlers and the dispatcher."""

from posfleet.agent.commands.catalog import CATALOG, CommandSpec
from posfleet.agent.commands.dispatch import CommandDispatcher
from posfleet.agent.commands.errors import CommandError, CommandFailed, CommandRejected

__all__ = [
    "CATALOG",
    "CommandDispatcher",
    "CommandError",
    "CommandFailed",
    "CommandRejected",
    "CommandSpec",
]
