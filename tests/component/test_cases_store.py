"""Cases in the store, on SQLite and PostgreSQL: filters, reminders, links and search."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.store.cases import (
    CaseCategory,
    CaseChannel,
    CaseDraft,
    CaseFilter,
    CaseLinkKind,
    CaseState,
    add_case_link,
    cases_linked_to,
    count_follow_ups_due,
    follow_ups_due,
    get_case,
    insert_case,
    list_case_links,
    list_cases,
    search_cases,
    update_case,
)

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
TODAY = NOW.date()


def _draft(merchant: str, subject: str, **extra: object) -> CaseDraft:
    fields: dict[str, object] = {
        "merchant_id": merchant,
        "subject": subject,
        "complaint": "the reader says 'card error' on every chip card",
        "channel": CaseChannel.PHONE,
        "category": CaseCategory.CARD_READER,
        **extra,
    }
    return CaseDraft(**fields)  # type: ignore[arg-type]


async def test_cases_filter_by_terminal_and_state_and_remind_of_follow_ups(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        reader = await insert_case(
            conn,
            _draft("M-Café_Zoë", "Reader fails", terminal_ids=["T-1", "T-2"], follow_up_on=TODAY),
            opened_by="user:sam",
            now=NOW,
        )
        late = await insert_case(
            conn,
            _draft("M-2", "Printer jams", follow_up_on=TODAY - timedelta(days=2)),
            opened_by="user:sam",
            now=NOW,
        )
        await insert_case(
            conn, _draft("M-2", "Later", follow_up_on=date(2026, 4, 1)), opened_by="u", now=NOW
        )
        closed = await insert_case(
            conn, _draft("M-3", "Done", follow_up_on=TODAY), opened_by="u", now=NOW
        )
        assert await update_case(conn, closed, {"state": "closed"}, expected_state=CaseState.OPEN)
        # A second change expecting the old state is refused, not applied twice.
        assert not await update_case(
            conn, closed, {"state": "resolved"}, expected_state=CaseState.OPEN
        )

    async with engine.connect() as conn:
        on_t2 = await list_cases(conn, CaseFilter(terminal_id="T-2"))
        assert [(c.id, c.terminal_ids) for c in on_t2] == [(reader, ["T-1", "T-2"])]
        assert [c.id for c in await follow_ups_due(conn, TODAY)] == [late, reader]
        assert await count_follow_ups_due(conn, TODAY) == (1, 1)
        open_m2 = await list_cases(conn, CaseFilter(states=[CaseState.OPEN], merchant_id="M-2"))
        assert len(open_m2) == 2
        assert (await get_case(conn, closed)).state is CaseState.CLOSED  # type: ignore[union-attr]
        # Substring, case-insensitive, with LIKE's wildcards taken literally.
        assert [c.id for c in await search_cases(conn, "café_z")] == [reader]
        assert await search_cases(conn, "caf%") == []
        assert [c.id for c in await search_cases(conn, f"#{late}")] == [late]


async def test_a_link_is_made_once_and_found_from_the_incident(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        case_id = await insert_case(conn, _draft("M-1", "Reader"), opened_by="u", now=NOW)
        assert await add_case_link(
            conn, case_id, CaseLinkKind.INCIDENT, "7", linked_by="u", now=NOW
        )
        again = await add_case_link(
            conn, case_id, CaseLinkKind.INCIDENT, "7", linked_by="v", now=NOW
        )
        assert not again
    async with engine.connect() as conn:
        links = await list_case_links(conn, case_id)
        assert [(link.kind, link.ref, link.linked_by) for link in links] == [
            (CaseLinkKind.INCIDENT, "7", "u")
        ]
        assert [c.id for c in await cases_linked_to(conn, CaseLinkKind.INCIDENT, 7)] == [case_id]
