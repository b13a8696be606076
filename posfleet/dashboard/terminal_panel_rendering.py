"""Draw the terminal page's panels to HTML: for the page and for its live stream.

Each registered :class:`~posfleet.dashboard.terminal_panels.TerminalPanel` loads its
context over one shared connection and renders its own (autoescaped) template. A panel
whose loader or template fails is drawn as a short notice and logged, so one feature's
bug never takes the whole terminal page, or its live stream, down with it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.dashboard.access import principal
from posfleet.dashboard.csrf import csrf_token, session_binding
from posfleet.dashboard.errors import RequestRejectedError
from posfleet.dashboard.terminal_panels import TerminalPanel, panels_of

log = logging.getLogger(__name__)

PANEL_FAILED_TEMPLATE = "panel_failed.html"


@dataclass(frozen=True, slots=True)
class RenderedPanel:
    """One panel drawn: its name, its HTML and a digest that changes with the HTML."""

    name: str
    html: Markup
    """Output of an autoescaping template, so safe to place as it is."""

    @property
    def element_id(self) -> str:
        """The id of its ``<section>``."""
        return f"panel-{self.name}"

    @property
    def digest(self) -> str:
        """A short fingerprint of the HTML: the page and the stream compare these."""
        return hashlib.blake2s(self.html.encode(), digest_size=8).hexdigest()


def panel_frame(request: web.Request, terminal_id: str) -> dict[str, Any]:
    """What every panel's template gets besides its own context."""
    return {
        "user": principal(request),
        "csrf_token": csrf_token(request, session_binding(request)),
        "terminal_id": terminal_id,
    }


async def _render_one(
    conn: AsyncConnection,
    panel: TerminalPanel,
    terminal_id: str,
    request: web.Request,
    frame: Mapping[str, Any],
) -> RenderedPanel:
    env = aiohttp_jinja2.get_env(request.app)
    try:
        context = await panel.load(conn, terminal_id, request)
        html = env.get_template(panel.template).render({**context, **frame})
    except (web.HTTPException, RequestRejectedError):
        raise
    except Exception:
        # A broken panel must not break the page; the log names it with the traceback.
        log.exception("terminal panel %r failed for %s", panel.name, terminal_id)
        html = env.get_template(PANEL_FAILED_TEMPLATE).render({"panel": panel.name, **frame})
    # The environment autoescapes, so the rendered text is safe HTML.
    return RenderedPanel(panel.name, Markup(html))


async def render_panels(
    conn: AsyncConnection, terminal_id: str, request: web.Request
) -> list[RenderedPanel]:
    """Every registered panel of the terminal's page, in page order."""
    frame = panel_frame(request, terminal_id)
    return [
        await _render_one(conn, panel, terminal_id, request, frame)
        for panel in panels_of(request.app)
    ]
