"""Turn each incoming ``cmd`` message into exactly one ``CommandResult``.

Order of business for one message:

1. parse it; a payload that is no command but names a usable id is answered ``rejected``,
   one without an id can only be logged and counted;
2. record its id in the outbox database, then acknowledge it to the broker (a crash
   before the record means the broker redelivers it; after, the record remembers it);
3. a repeated id is answered with the stored result, never run again; an id whose run
   was cut short by a restart is answered ``failed`` (running a reboot twice is worse
   than asking staff to retry);
4. expired -> ``expired``; unknown name, bad arguments or a driver that cannot do it ->
   ``rejected``; then run it under the serial-link lock: success -> ``ok``, anything
   else -> ``failed`` with the reason;
5. store the result with its outbox entry in one transaction, so it is published even
   across an outage or a crash.

Nothing a command does can stop the dispatcher.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from posfleet.agent.commands.catalog import CATALOG, UpdaterCommandSpec
from posfleet.agent.commands.errors import CommandError, CommandFailed, CommandRejected
from posfleet.agent.commands.handlers import FirmwareControl
from posfleet.agent.drivers.errors import TerminalRefusedError
from posfleet.agent.errors import OutboxError
from posfleet.agent.outbox import CommandState, EntryKind, Outbox
from posfleet.agent.serial.errors import SerialLinkError
from posfleet.agent.uplink import IncomingCommand
from posfleet.contract import (
    MAX_PAYLOAD_BYTES,
    Channel,
    Command,
    CommandResult,
    CommandStatus,
    encode,
    utcnow,
)

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 600.0
"""Longest any command may hold the terminal (a log collection over a slow line)."""

_COMMAND_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_INTERRUPTED = "the agent restarted while this command ran; it was not run again"


class CommandDispatcher:
    """Runs commands against one driver; results go to the outbox."""

    def __init__(
        self,
        driver: object,
        outbox: Outbox,
        serial_lock: asyncio.Lock,
        *,
        on_result: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = utcnow,
        timeout_s: float = COMMAND_TIMEOUT_S,
        firmware: FirmwareControl | None = None,
    ) -> None:
        self.driver = driver
        self.firmware = firmware
        """The firmware updater, for its commands (``firmware_cancel``); None: none runs."""
        self.outbox = outbox
        self.serial_lock = serial_lock
        self._on_result = on_result
        self._clock = clock
        self._timeout_s = timeout_s
        self.malformed = 0
        """Payloads that could not be answered because they carry no usable id."""
        self.repeated = 0
        """Redelivered ids answered from the history."""
        self.results: dict[CommandStatus, int] = dict.fromkeys(CommandStatus, 0)

    def answer_interrupted(self) -> None:
        """At start-up: answer every command a crash or restart cut short."""
        for command_id in self.outbox.interrupted_commands():
            log.warning("command %s was cut short by a restart; answering failed", command_id)
            self._finish(self._result(command_id, CommandStatus.FAILED, error=_INTERRUPTED))

    async def handle(self, incoming: IncomingCommand) -> None:
        """Answer one incoming message; never raises (except cancellation)."""
        try:
            await self._handle(incoming)
        except OutboxError as exc:
            # Not acknowledged if the record failed: the broker redelivers it later.
            log.error("cannot record a command: %s", exc)
        except Exception:
            log.exception("unexpected error while handling a command")

    async def _handle(self, incoming: IncomingCommand) -> None:
        try:
            command = Command.model_validate_json(incoming.payload)
        except ValidationError as exc:
            self._answer_malformed(incoming, exc)
            return
        claim = self.outbox.claim_command(command.id)
        incoming.ack()
        if claim.state is CommandState.DONE:
            assert claim.result is not None
            self.repeated += 1
            log.info("command %s seen again: re-sending its result", command.id)
            self.outbox.append_plain(Channel.CMD_RESULT, EntryKind.RESULT, claim.result)
            self._on_result()
            return
        if claim.state is CommandState.INTERRUPTED:
            self._finish(self._result(command.id, CommandStatus.FAILED, error=_INTERRUPTED))
            return
        self._finish(await self._run(command))

    def _answer_malformed(self, incoming: IncomingCommand, exc: ValidationError) -> None:
        command_id = _salvage_id(incoming.payload)
        incoming.ack()
        reason = f"malformed command: {_summary(exc)}"
        if command_id is None:
            self.malformed += 1
            log.warning("dropped a command without a usable id (%s)", reason)
            return
        claim = self.outbox.claim_command(command_id)
        if claim.state is CommandState.DONE and claim.result is not None:
            self.outbox.append_plain(Channel.CMD_RESULT, EntryKind.RESULT, claim.result)
            self._on_result()
            return
        self._finish(self._result(command_id, CommandStatus.REJECTED, error=reason))

    async def _run(self, command: Command) -> CommandResult:
        now = self._clock()
        if command.expires_at <= now:
            return self._result(
                command.id,
                CommandStatus.EXPIRED,
                error=f"expired at {command.expires_at.isoformat()}, received {now.isoformat()}",
            )
        try:
            output = await self._execute(command, now)
        except CommandError as exc:
            status = (
                CommandStatus.REJECTED if isinstance(exc, CommandRejected) else CommandStatus.FAILED
            )
            return self._result(command.id, status, output=exc.output, error=exc.reason)
        return self._result(command.id, CommandStatus.OK, output=output)

    async def _execute(self, command: Command, now: datetime) -> dict[str, Any]:
        spec = CATALOG.get(command.name)
        if spec is None:
            raise CommandRejected(f"unknown command {command.name!r}")
        try:
            args = spec.args.model_validate(command.args)
        except ValidationError as exc:
            raise CommandRejected(f"invalid arguments for {command.name}: {_summary(exc)}") from exc
        if isinstance(spec, UpdaterCommandSpec):
            return await self._execute_in_updater(spec, command, args)
        if not callable(getattr(self.driver, spec.driver_method, None)):
            raise CommandRejected(f"{command.name} is not supported by this terminal's driver")
        log.info("running command %s (%s, by %s)", command.id, command.name, command.issued_by)
        try:
            async with asyncio.timeout(self._timeout_s), self.serial_lock:
                return await spec.run(self.driver, args, now)  # type: ignore[arg-type]
        except CommandError:
            raise
        except TerminalRefusedError as exc:
            raise CommandFailed(str(exc), {"result_code": exc.result_code}) from exc
        except SerialLinkError as exc:
            raise CommandFailed(f"the terminal did not answer: {exc}") from exc
        except TimeoutError as exc:
            raise CommandFailed(f"no outcome within {self._timeout_s:g} s") from exc
        except Exception as exc:
            log.exception("command %s (%s) crashed", command.id, command.name)
            raise CommandFailed(f"agent error: {type(exc).__name__}: {exc}") from exc

    async def _execute_in_updater(
        self, spec: UpdaterCommandSpec, command: Command, args: Any
    ) -> dict[str, Any]:
        if self.firmware is None:
            raise CommandRejected(f"{command.name}: this agent runs no firmware updater")
        log.info("running command %s (%s, by %s)", command.id, command.name, command.issued_by)
        try:
            async with asyncio.timeout(self._timeout_s):
                return await spec.run(self.firmware, args, command.issued_by)
        except CommandError:
            raise
        except TimeoutError as exc:
            raise CommandFailed(f"no outcome within {self._timeout_s:g} s") from exc
        except Exception as exc:
            log.exception("command %s (%s) crashed", command.id, command.name)
            raise CommandFailed(f"agent error: {type(exc).__name__}: {exc}") from exc

    def _result(
        self,
        command_id: str,
        status: CommandStatus,
        *,
        output: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> CommandResult:
        return CommandResult(
            id=command_id,
            status=status,
            output=output or {},
            error=error[:2048] if error else None,
            ts=self._clock(),
        )

    def _finish(self, result: CommandResult) -> None:
        payload = encode(result)
        if len(payload) > MAX_PAYLOAD_BYTES:
            result = self._result(
                result.id,
                CommandStatus.FAILED,
                error=f"result of {len(payload)} bytes exceeds the limit of {MAX_PAYLOAD_BYTES}",
            )
            payload = encode(result)
        self.outbox.finish_command(result.id, payload)
        self.results[result.status] += 1
        log.info(
            "command %s: %s%s",
            result.id,
            result.status.value,
            f" ({result.error})" if result.error else "",
        )
        self._on_result()


def _salvage_id(payload: bytes) -> str | None:
    """The ``id`` of a payload that is JSON but no valid command, if it is a usable id."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    candidate = data.get("id")
    if isinstance(candidate, str) and _COMMAND_ID.match(candidate):
        return candidate
    return None


def _summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'args'}: {e['msg']}"
        for e in exc.errors(include_url=False)[:5]
    )
