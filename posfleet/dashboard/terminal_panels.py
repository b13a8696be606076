"""The terminal page's panels: each feature adds its own section to one terminal's page.

A panel is a template of its own and a function that loads its context for a terminal.
The terminal page renders every registered panel in order, and its live stream re-renders
them and sends the ones whose HTML changed, so a feature (commands, backups, cases) shows
on the terminal page and updates live without the page knowing about it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

PanelLoader = Callable[[AsyncConnection, str, web.Request], Awaitable[Mapping[str, Any]]]
"""``(connection, terminal id, request) -> the template's context``."""


@dataclass(frozen=True, slots=True)
class TerminalPanel:
    """One section of the terminal page."""

    name: str
    """Its element id is ``panel-<name>``; letters, digits and ``-`` only."""
    template: str
    """A template under ``dashboard/templates/`` that draws the section's inside."""
    load: PanelLoader
    order: int = 100
    """Smaller first; the page's own sections (health, charts, incidents) are 10 to 50."""


@dataclass(slots=True)
class TerminalPanels:
    """The panels registered on one app."""

    panels: list[TerminalPanel] = field(default_factory=list)


PANELS_KEY = web.AppKey("terminal_panels", TerminalPanels)


def add_panel(app: web.Application, panel: TerminalPanel) -> None:
    """Register ``panel`` on the app's terminal page (before the app starts)."""
    if PANELS_KEY not in app:
        app[PANELS_KEY] = TerminalPanels()
    panels = app[PANELS_KEY].panels
    if any(p.name == panel.name for p in panels):
        raise ValueError(f"a terminal panel named {panel.name!r} is registered already")
    panels.append(panel)
    panels.sort(key=lambda p: (p.order, p.name))


def panels_of(app: web.Application) -> list[TerminalPanel]:
    """The registered panels, in page order."""
    return list(app[PANELS_KEY].panels) if PANELS_KEY in app else []
