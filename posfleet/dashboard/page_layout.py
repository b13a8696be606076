"""The frame every HTML page shares: where its static files are, the header's sections,
the search box's target and how often live pages refresh.

``templates/base.html`` draws the frame from these (see
:mod:`posfleet.dashboard.templating`); the labels here are keys, the template words them.
"""

from __future__ import annotations

STATIC_PREFIX = "/static/"
"""Where the stylesheet and the scripts are served; pages load scripts only from here."""

SECTIONS = (
    ("Overview", "/overview"),
    ("Fleet", "/"),
    ("Incidents", "/incidents"),
    ("Cases", "/cases"),
    ("Firmware", "/firmware"),
    ("Reports", "/reports"),
    ("Knowledge base", "/knowledge"),
)
"""The header's navigation, (label, path)."""

ADMIN_SECTION = ("Admin", "/admin/users")
"""Shown to admins only, after the others."""

SEARCH_PATH = "/search"
"""Where the header's search box sends its ``q``: terminals, merchants, cases."""

LIVE_REFRESH_SECONDS = 5
"""How often a live page re-fetches its section."""
