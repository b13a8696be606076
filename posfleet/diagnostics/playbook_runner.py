"""Running a playbook against a terminal, with a server-side deadline and a final state."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import utcnow
from posfleet.diagnostics.command_channel import CommandSender
from posfleet.diagnostics.errors import CommandTimeoutError, PlaybookError
from posfleet.diagnostics.playbooks import BUILTIN_PLAYBOOKS, Playbook, StepOutcome
from posfleet.store.engine import write_transaction
from posfleet.store.incidents import (
    PlaybookRun,
    RunState,
    add_note,
    finish_playbook_run,
    get_playbook_run,
    start_playbook_run,
)

log = logging.getLogger(__name__)

DEFAULT_RUN_TIMEOUT_S = 120.0


class PlaybookRunner:
    """Runs playbooks through a :class:`CommandSender` and records every run."""

    def __init__(
        self,
        engine: AsyncEngine,
        sender: CommandSender,
        *,
        playbooks: Mapping[str, Playbook] = BUILTIN_PLAYBOOKS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._engine = engine
        self._sender = sender
        self._playbooks = playbooks
        self._clock = clock

    async def run(
        self,
        name: str,
        terminal_id: str,
        *,
        started_by: str,
        incident_id: int | None = None,
        timeout_s: float = DEFAULT_RUN_TIMEOUT_S,
    ) -> PlaybookRun:
        """Run playbook ``name``; always returns a run in a final state.

        The whole run is bounded by ``timeout_s``; a step the terminal does not answer
        ends the run ``timed_out`` (the remaining steps would not be answered either).
        """
        playbook = self._playbooks.get(name)
        if playbook is None:
            known = ", ".join(sorted(self._playbooks))
            raise PlaybookError(f"no playbook {name!r}; known: {known}")
        started = self._clock()
        async with write_transaction(self._engine) as conn:
            run_id = await start_playbook_run(
                conn,
                terminal_id=terminal_id,
                playbook=name,
                started_by=started_by,
                now=started,
                deadline=started + timedelta(seconds=timeout_s),
                incident_id=incident_id,
            )
        outcomes: dict[str, StepOutcome] = {}
        steps: list[dict[str, object]] = []
        state, summary = RunState.SUCCEEDED, ""
        remedy: tuple[str, ...] = ()
        deadline = time.monotonic() + timeout_s
        try:
            for step in playbook.steps:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CommandTimeoutError(terminal_id, "-", timeout_s)
                result = await self._sender.send(
                    terminal_id,
                    step.command,
                    dict(step.args),
                    issued_by=started_by,
                    timeout_s=min(step.timeout_s, left),
                )
                outcome = StepOutcome(
                    step.command, result.status.value, result.output, result.error
                )
                outcomes[step.command] = outcome
                steps.append(
                    {
                        "command": step.command,
                        "label": step.label,
                        "command_id": result.id,
                        "status": result.status.value,
                        "passed": outcome.passed,
                        "output": result.output,
                        "error": result.error,
                    }
                )
                if result.status.value in ("rejected", "expired"):
                    state = RunState.FAILED
                    summary = f"the terminal {result.status.value} {step.command}: {result.error}"
                    break
            else:
                verdict = playbook.verdict(outcomes)
                summary, remedy = verdict.summary, verdict.remedy
        except CommandTimeoutError as exc:
            state = RunState.TIMED_OUT
            summary = f"{exc}; it may be offline"
            steps.append({"command_id": exc.command_id, "status": "timed_out"})
        except asyncio.CancelledError:
            await self._finish(
                run_id,
                state=RunState.FAILED,
                summary="cancelled",
                remedy=(),
                steps=steps,
                incident_id=incident_id,
            )
            raise
        # The sender is someone else's code; whatever it raises, the run gets a final state.
        except Exception as exc:
            log.exception("playbook %s on %s failed", name, terminal_id)
            state, summary = RunState.FAILED, f"internal error: {exc}"
        return await self._finish(
            run_id,
            state=state,
            summary=summary,
            remedy=remedy,
            steps=steps,
            incident_id=incident_id,
        )

    async def _finish(
        self,
        run_id: int,
        *,
        state: RunState,
        summary: str,
        remedy: tuple[str, ...],
        steps: list[dict[str, object]],
        incident_id: int | None,
    ) -> PlaybookRun:
        now = self._clock()
        async with write_transaction(self._engine) as conn:
            await finish_playbook_run(
                conn, run_id, state=state, verdict=summary, remedy=remedy, steps=steps, now=now
            )
            if incident_id is not None:
                await add_note(
                    conn,
                    incident_id,
                    author="playbook",
                    kind="playbook",
                    text=f"{state.value}: {summary}",
                    detail={"run_id": run_id, "remedy": list(remedy), "steps": steps},
                    now=now,
                )
            run = await get_playbook_run(conn, run_id)
        assert run is not None
        return run
