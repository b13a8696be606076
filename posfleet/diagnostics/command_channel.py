"""Running commands on terminals and awaiting their results: what playbooks need.

A :class:`CommandSender` runs one command and returns its result;
:class:`DownlinkCommandSender` is the real one: it builds the
:class:`~posfleet.contract.Command`, whose ``expires_at`` is the caller's deadline, and
sends it through the broker bridge's downlink
(:class:`~posfleet.broker_bridge.downlink.CommandLink`), which publishes it on the
terminal's ``cmd`` topic and brings back the ``cmd/result`` with the same id.
"""

from __future__ import annotations

import itertools
import secrets
from datetime import timedelta
from typing import Any, Protocol

from posfleet.broker_bridge.downlink import CommandLink
from posfleet.contract import Command, CommandResult, utcnow
from posfleet.diagnostics.errors import CommandTimeoutError


class CommandSender(Protocol):
    """Runs one command on a terminal and returns its result."""

    async def send(
        self,
        terminal_id: str,
        name: str,
        args: dict[str, Any],
        *,
        issued_by: str,
        timeout_s: float,
    ) -> CommandResult:
        """Send, wait for the result; raise :class:`CommandTimeoutError` at the deadline."""
        ...


_ids = itertools.count(1)


def new_command_id() -> str:
    """A command id unique across restarts and instances."""
    return f"c{next(_ids)}-{secrets.token_hex(6)}"


class DownlinkCommandSender:
    """The :class:`CommandSender` over the broker bridge's downlink."""

    def __init__(self, link: CommandLink) -> None:
        self.link = link

    async def send(
        self,
        terminal_id: str,
        name: str,
        args: dict[str, Any],
        *,
        issued_by: str,
        timeout_s: float,
    ) -> CommandResult:
        """Publish the command and wait for its result, at most ``timeout_s`` seconds."""
        now = utcnow()
        command = Command(
            id=new_command_id(),
            name=name,
            args=args,
            issued_by=issued_by,
            issued_at=now,
            # The terminal drops it after the deadline too, so a late terminal does not
            # run a command nobody waits for any more.
            expires_at=now + timedelta(seconds=timeout_s),
        )
        try:
            return await self.link.request(terminal_id, command, timeout_s=timeout_s)
        except TimeoutError:
            raise CommandTimeoutError(terminal_id, command.id, timeout_s) from None
