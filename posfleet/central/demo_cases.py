"""The demo's merchant cases: the helpdesk's calls about the storyline's sick terminals.

Once the fleet runs, the demo's admin opens two cases, as the helpdesk would when the
merchants call:

- the shop whose printer runs out of paper (the story's first fault) calls: the case is
  linked to the terminal's incident as soon as the rule opens it;
- the busy till's merchant calls about chip cards failing: a high-priority case with a
  follow-up due today, so the Cases page's reminder list has something to show.

Linking waits in a background task for the incident (bounded; the story scales it) and
never takes the demo down: a failure is logged and the demo goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import utcnow
from posfleet.helpdesk import CaseDesk, helpdesk_day
from posfleet.simulator.demo_story import BUSY_TILL, DEMO_STORY
from posfleet.simulator.faults import FaultName
from posfleet.simulator.fleet_file import FleetTerminal
from posfleet.store.cases import CaseCategory, CaseChannel, CaseDraft, CaseLinkKind, CasePriority
from posfleet.store.incidents import IncidentState, list_incidents

log = logging.getLogger(__name__)

INCIDENT_WAIT_S = 300.0
"""How long, at story speed 1, the demo waits for the paper-out incident to link it."""
POLL_S = 2.0
_TASKS: set[asyncio.Task[None]] = set()  # kept referenced until done


def _paper_out_terminal(terminals: Sequence[FleetTerminal]) -> FleetTerminal | None:
    step = next(s for s in DEMO_STORY if s.action == "inject" and s.fault is FaultName.PAPER_OUT)
    chosen = step.select(terminals)
    return next((t for t in terminals if t.terminal_id in chosen), None)


def _busy_till(terminals: Sequence[FleetTerminal]) -> FleetTerminal | None:
    chosen = BUSY_TILL(terminals)
    return next((t for t in terminals if t.terminal_id in chosen), None)


def _draft(terminal: FleetTerminal, **fields: object) -> CaseDraft:
    return CaseDraft(
        merchant_id=terminal.merchant_id or terminal.terminal_id,
        terminal_ids=[terminal.terminal_id],
        channel=CaseChannel.PHONE,
        **fields,  # type: ignore[arg-type]
    )


async def _link_when_open(
    desk: CaseDesk, case_id: int, terminal_id: str, *, actor: str, wait_s: float
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while loop.time() < deadline:
        async with desk.engine.connect() as conn:
            found = await list_incidents(
                conn, terminal_id=terminal_id, states=[IncidentState.OPEN], limit=1
            )
        if found:
            await desk.link(case_id, CaseLinkKind.INCIDENT, str(found[0].id), actor=actor)
            log.info("demo: case #%d linked to incident #%d", case_id, found[0].id)
            return
        await asyncio.sleep(POLL_S)
    log.info("demo: no incident on %s to link to case #%d", terminal_id, case_id)


async def _open(
    engine: AsyncEngine, terminals: Sequence[FleetTerminal], actor: str, speed: float
) -> None:
    desk = CaseDesk(engine)
    try:
        busy = _busy_till(terminals)
        if busy is not None:
            await desk.open(
                _draft(
                    busy,
                    subject="Chip cards fail at the till",
                    complaint="Since this morning every second chip card says 'card error'; "
                    "contactless still works. It is our busiest till.",
                    category=CaseCategory.CARD_READER,
                    priority=CasePriority.HIGH,
                    caller_name="Shop manager",
                    follow_up_on=helpdesk_day(utcnow()),
                ),
                actor=actor,
            )
        paper = _paper_out_terminal(terminals)
        if paper is not None:
            case = await desk.open(
                _draft(
                    paper,
                    subject="Receipts do not print",
                    complaint="The terminal takes the payment but no receipt comes out.",
                    category=CaseCategory.PRINTER,
                ),
                actor=actor,
            )
            await _link_when_open(
                desk, case.id, paper.terminal_id, actor=actor, wait_s=INCIDENT_WAIT_S / speed
            )
    except Exception:
        # The cases are a side of the story: they must not take the rest of the demo down.
        log.exception("the demo's cases could not be opened")


def start_demo_cases(
    engine: AsyncEngine, terminals: Sequence[FleetTerminal], *, actor: str, speed: float = 1.0
) -> None:
    """Open the demo's cases in the background (linking waits for the incident)."""
    task = asyncio.create_task(_open(engine, terminals, actor, speed), name="demo-cases")
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
