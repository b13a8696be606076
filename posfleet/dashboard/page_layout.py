"""The frame every HTML page shares: head, header with the user and logout, main."""

from __future__ import annotations

from collections.abc import Sequence

from posfleet.dashboard.markup import Markup, concat, element
from posfleet.store.accounts import Principal

STATIC_PREFIX = "/static/"


def _user_bar(user: Principal, csrf_token: str) -> Markup:
    return element(
        "form",
        element("span", user.name, " (", user.role.value, ")", class_="who"),
        element("input", type="hidden", name="csrf_token", value=csrf_token),
        element("button", "Log out", type="submit"),
        method="post",
        action="/logout",
        class_="logout",
    )


def _sections() -> Markup:
    return element(
        "nav",
        element("a", "Fleet", href="/"),
        element("a", "Incidents", href="/incidents"),
        class_="sections",
        aria_label="Sections",
    )


def page(
    title: str,
    main: Markup,
    *,
    user: Principal | None = None,
    csrf_token: str = "",
    scripts: Sequence[str] = (),
) -> Markup:
    """A whole HTML document; ``scripts`` are file names under ``/static/``.

    Scripts are files, never inline, so the Content-Security-Policy can forbid inline script.
    """
    head = element(
        "head",
        element("meta", charset="utf-8"),
        element("meta", name="viewport", content="width=device-width, initial-scale=1"),
        element("title", title, " - posfleet"),
        element("link", rel="stylesheet", href=f"{STATIC_PREFIX}dashboard.css"),
        *(element("script", src=f"{STATIC_PREFIX}{name}", defer=True) for name in scripts),
    )
    header = element(
        "header",
        element("a", "posfleet", href="/", class_="brand"),
        _sections() if user is not None else None,
        _user_bar(user, csrf_token) if user is not None else None,
    )
    body = element("body", header, element("main", main))
    return concat([Markup("<!DOCTYPE html>\n"), element("html", head, body, lang="en")])


def error_page(status: int, message: str) -> Markup:
    """A page that says what went wrong, for requests from a browser."""
    return page(
        f"Error {status}",
        concat(
            [
                element("h1", f"Error {status}"),
                element("p", message),
                element("p", element("a", "Back to the fleet", href="/")),
            ]
        ),
    )


LIVE_REFRESH_SECONDS = 5
"""How often a live page re-fetches its section."""


def live_page(
    title: str,
    section: Markup,
    *,
    refresh_url: str,
    user: Principal | None,
    csrf_token: str,
) -> Markup:
    """A page whose one section ``live-section.js`` re-fetches from ``refresh_url``."""
    live = element(
        "section",
        section,
        id="live-section",
        data_refresh_url=refresh_url,
        data_refresh_seconds=LIVE_REFRESH_SECONDS,
        aria_live="polite",
    )
    status = element(
        "p",
        "Updated live every ",
        LIVE_REFRESH_SECONDS,
        " s.",
        class_="status",
        id="refresh-status",
    )
    body = concat([element("h1", title), status, live])
    return page(title, body, user=user, csrf_token=csrf_token, scripts=["live-section.js"])
