"""Running a playbook against a terminal, with a server-side deadline and a final state."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import utcnow
from posfleet.diagnostics.command_channel import CommandSender
from posfleet.diagnostics.errors import CommandTimeoutError, PlaybookError
from posfleet.diagnostics.playbook_targets import playbook_targets
from posfleet.diagnostics.playbooks import (
    BUILTIN_PLAYBOOKS,
    Playbook,
    PlaybookStep,
    StepOutcome,
    step_finding,
)
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
# -- visible text (a run's summary, the playbook note) ---------------------------------
UNKNOWN_PLAYBOOK = "no playbook {name!r}; known: {known}"
REFUSED = "the terminal {status} {command}: {error}"
NO_ANSWER = "{error}; it may be offline"
CANCELLED = "cancelled"
INTERNAL_ERROR = "internal error: {error}"
NOTE = "{state}: {summary}"

MAX_PARALLEL_RUNS = 16
"""How many terminals :meth:`PlaybookRunner.run_many` works on at once."""


def _found_fault(outcome: StepOutcome) -> bool:
    return outcome.status in ("ok", "failed") and not outcome.passed


def _step_record(step: PlaybookStep, outcome: StepOutcome, command_id: str) -> dict[str, object]:
    """One step as the run stores it: what was sent, what came back, what it means."""
    return {
        "command": step.command,
        "label": step.label,
        "command_id": command_id,
        "status": outcome.status,
        "passed": outcome.passed,
        "finding": step_finding(outcome),
        # The step's remedy answers what the step found; a refusal or silence found nothing.
        "remedy": list(step.remedy) if _found_fault(outcome) else [],
        "output": dict(outcome.output),
        "error": outcome.error,
    }


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
            raise PlaybookError(UNKNOWN_PLAYBOOK.format(name=name, known=known))
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
        healthy: bool | None = None
        deadline = time.monotonic() + timeout_s
        step = playbook.steps[0]
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
                steps.append(_step_record(step, outcome, result.id))
                if result.status.value in ("rejected", "expired"):
                    state = RunState.FAILED
                    summary = REFUSED.format(
                        status=result.status.value, command=step.command, error=result.error
                    )
                    break
            else:
                verdict = playbook.verdict(outcomes)
                summary, remedy, healthy = verdict.summary, verdict.remedy, verdict.healthy
        except CommandTimeoutError as exc:
            state = RunState.TIMED_OUT
            summary = NO_ANSWER.format(error=exc)
            steps.append(_step_record(step, StepOutcome(step.command, "timed_out"), exc.command_id))
        except asyncio.CancelledError:
            await self._finish(
                run_id,
                state=RunState.FAILED,
                summary=CANCELLED,
                remedy=(),
                steps=steps,
                incident_id=incident_id,
                healthy=None,
            )
            raise
        # The sender is someone else's code; whatever it raises, the run gets a final state.
        except Exception as exc:
            log.exception("playbook %s on %s failed", name, terminal_id)
            state, summary = RunState.FAILED, INTERNAL_ERROR.format(error=exc)
        return await self._finish(
            run_id,
            state=state,
            summary=summary,
            remedy=remedy,
            steps=steps,
            incident_id=incident_id,
            healthy=healthy,
        )

    async def run_many(
        self,
        name: str,
        targets: Sequence[tuple[str, int | None]],
        *,
        started_by: str,
        timeout_s: float = DEFAULT_RUN_TIMEOUT_S,
    ) -> list[PlaybookRun]:
        """Run playbook ``name`` on every ``(terminal_id, incident_id)``, a few at a time.

        Each terminal gets its own run, recorded on its own incident; the runs share one
        deadline, so the whole call ends within ``timeout_s`` (plus the recording).
        """
        if name not in self._playbooks:
            known = ", ".join(sorted(self._playbooks))
            raise PlaybookError(UNKNOWN_PLAYBOOK.format(name=name, known=known))
        gate = asyncio.Semaphore(MAX_PARALLEL_RUNS)
        deadline = time.monotonic() + timeout_s

        async def one(terminal_id: str, incident_id: int | None) -> PlaybookRun:
            async with gate:
                left = max(deadline - time.monotonic(), 0.001)
                return await self.run(
                    name,
                    terminal_id,
                    started_by=started_by,
                    incident_id=incident_id,
                    timeout_s=left,
                )

        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(one(terminal_id, incident_id), name=f"playbook-{terminal_id}")
                for terminal_id, incident_id in targets
            ]
        return [task.result() for task in tasks]

    async def run_for_incident(
        self,
        name: str,
        incident_id: int,
        *,
        started_by: str,
        terminal: str | None = None,
        timeout_s: float = DEFAULT_RUN_TIMEOUT_S,
    ) -> list[PlaybookRun]:
        """Run playbook ``name`` from incident ``incident_id``; every run in a final state.

        On a terminal incident it runs on that terminal; on a fleet incident on each
        affected terminal, or on ``terminal`` alone (see :func:`playbook_targets`). Raises
        :class:`PlaybookError` for an unknown playbook, before anything is sent.
        """
        if name not in self._playbooks:
            known = ", ".join(sorted(self._playbooks))
            raise PlaybookError(UNKNOWN_PLAYBOOK.format(name=name, known=known))
        async with self._engine.connect() as conn:
            targets = await playbook_targets(conn, incident_id, terminal)
        return await self.run_many(name, targets, started_by=started_by, timeout_s=timeout_s)

    async def _finish(
        self,
        run_id: int,
        *,
        state: RunState,
        summary: str,
        remedy: tuple[str, ...],
        steps: list[dict[str, object]],
        incident_id: int | None,
        healthy: bool | None,
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
                    text=NOTE.format(state=state.value, summary=summary),
                    detail={
                        "run_id": run_id,
                        "healthy": healthy,
                        "remedy": list(remedy),
                        "steps": steps,
                    },
                    now=now,
                )
            run = await get_playbook_run(conn, run_id)
        assert run is not None
        return run
