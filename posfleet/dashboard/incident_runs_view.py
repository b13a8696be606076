"""The playbook results on an incident page: each run's verdict, findings and remedy.

A run that ended is not the same as a terminal that is healthy: the heading says what
the checks found (fault found, no fault found), and the run's state only when it could
not finish. Pure functions to view objects; ``incident_runs.html`` lays them out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from posfleet.dashboard.incident_reading import RunView
from posfleet.dashboard.templating import _
from posfleet.diagnostics.playbooks import BUILTIN_PLAYBOOKS
from posfleet.store.incidents import PlaybookRun, RunState

EXPANDED_RUNS = 3
"""Up to this many runs are shown whole; more are collapsed to one line each."""


@dataclass(frozen=True)
class Verdict:
    """Words and badge colour (ok, bad, warn, muted) of a run or of one of its steps."""

    words: str
    kind: str


@dataclass(frozen=True)
class StepRow:
    """One answered step: what was checked, its result, what it found, its own remedy."""

    label: str
    result: Verdict
    finding: str
    remedy: list[str]
    """The step's remedy when it differs from the run's (empty otherwise)."""


@dataclass(frozen=True)
class RunArticle:
    """One run as the page shows it."""

    run: PlaybookRun
    title: str
    outcome: Verdict
    steps: list[StepRow]
    steps_have_remedy: bool
    remedy: list[str]
    took_seconds: int | None

    @property
    def started(self) -> str:
        """When it started, as the page prints it."""
        return self.run.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")


def outcome(view: RunView) -> Verdict:
    """The run's outcome: the verdict once it ran, else its state."""
    state = view.run.state
    if state is RunState.RUNNING:
        return Verdict(_("running"), "muted")
    if state is RunState.TIMED_OUT:
        return Verdict(_("no answer"), "warn")
    if state is RunState.FAILED:
        return Verdict(_("could not run"), "warn")
    if view.healthy is None:
        return Verdict(_("finished"), "muted")
    if view.healthy:
        return Verdict(_("no fault found"), "ok")
    return Verdict(_("fault found"), "bad")


def playbook_title(name: str) -> str:
    """A playbook's title for people; its name when it is not a built-in one."""
    found = BUILTIN_PLAYBOOKS.get(name)
    return found.title if found is not None else name


def _step_result(step: Mapping[str, Any]) -> Verdict:
    status = str(step.get("status", ""))
    if status == "timed_out":
        return Verdict(_("no answer"), "warn")
    if status == "rejected":
        return Verdict(_("refused"), "warn")
    if status == "expired":
        return Verdict(_("expired"), "warn")
    return Verdict(_("passed"), "ok") if step.get("passed") else Verdict(_("failed"), "bad")


def _texts(steps: Sequence[object]) -> list[str]:
    return [str(step) for step in steps if step]


def _own_remedy(step: Mapping[str, Any], verdict_remedy: Sequence[str]) -> list[str]:
    remedy = step.get("remedy")
    own = [str(s) for s in remedy] if isinstance(remedy, list) else []
    # The step whose failure is the verdict already has its remedy under the verdict.
    return [] if own == list(verdict_remedy) else _texts(own)


def _step_row(step: Mapping[str, Any], verdict_remedy: Sequence[str]) -> StepRow:
    return StepRow(
        label=str(step.get("label") or step.get("command") or "-"),
        result=_step_result(step),
        finding=str(step.get("finding") or step.get("error") or "-"),
        remedy=_own_remedy(step, verdict_remedy),
    )


def run_article(view: RunView) -> RunArticle:
    """One run: playbook and terminal, the verdict, each step's finding, what to do."""
    run = view.run
    steps = [_step_row(step, run.remedy) for step in run.steps if isinstance(step, dict)]
    took = (
        round((run.finished_at - run.started_at).total_seconds())
        if run.finished_at is not None
        else None
    )
    return RunArticle(
        run=run,
        title=playbook_title(run.playbook),
        outcome=outcome(view),
        steps=steps,
        steps_have_remedy=any(step.remedy for step in steps),
        remedy=_texts(run.remedy),
        took_seconds=took,
    )
