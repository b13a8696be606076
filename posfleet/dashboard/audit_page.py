"""``/admin/audit``: the audit log for admins, filtered by who, what, which object and when,
newest first, a page at a time (the "Older" link carries the keyset cursor)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from posfleet.dashboard.access import requires
from posfleet.dashboard.admin_api import AUDIT_SCOPE, audit_filter, query_model
from posfleet.dashboard.admin_models import AuditQuery
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.paging_cursor import cursors
from posfleet.dashboard.templating import render_page
from posfleet.store.accounts import Role
from posfleet.store.audit_query import query_audit

AUDIT_PATH = "/admin/audit"
FILTERS = ("actor", "action", "target", "since", "until")


@requires(Role.ADMIN)
async def audit_page(request: web.Request) -> web.Response:
    """``GET /admin/audit?actor=&action=&target=&since=&until=&before=``."""
    # Empty filter fields (the form sends them all) count as absent.
    query = query_model(request, AuditQuery)
    signer = cursors(request.app)
    before = signer.row_id(AUDIT_SCOPE, query.before, "before")
    async with request.app[ENGINE_KEY].connect() as conn:
        page = await query_audit(conn, audit_filter(query), limit=query.limit, before=before)
    values = {name: request.query.get(name, "") for name in FILTERS}
    kept = {k: v for k, v in values.items() if v}
    older = None
    if page.next_before is not None:
        following = signer.id_cursor(AUDIT_SCOPE, page.next_before)
        older = f"{AUDIT_PATH}?{urlencode({**kept, 'before': following})}"
    context: dict[str, Any] = {
        "entries": page.entries,
        "values": values,
        "older": older,
        "newest": f"{AUDIT_PATH}?{urlencode(kept)}" if query.before is not None else None,
        "audit_path": AUDIT_PATH,
        "admin_tab": "audit",
    }
    return render_page(request, "admin_audit.html", context)


def add_routes(app: web.Application) -> None:
    """Register the audit log page."""
    app.router.add_get(AUDIT_PATH, audit_page)
