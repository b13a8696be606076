"""CSRF protection for the dashboard's forms: HMAC-bound tokens (signed double submit).

Each form carries a token derived with the server secret from the id in the browser's
(pre-)session cookie. Why this rather than a synchronizer token kept server-side: it needs
no storage, so it survives restarts and works across several dashboard instances; and
unlike a plain double submit, an attacker who can plant a cookie still cannot compute the
matching token. SameSite=Strict cookies are a second, independent layer.
"""

from __future__ import annotations

from aiohttp import web
from multidict import MultiMapping

from posfleet.dashboard.app_keys import SESSION_KEY, SIGNER_KEY
from posfleet.dashboard.errors import CsrfRejectedError

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
"""Where a script's ``fetch`` sends the token instead of a form field."""

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def login_binding(presession_id: str) -> str:
    """What a login form's token is bound to: the pre-login session id."""
    return f"login:{presession_id}"


def session_binding(request: web.Request) -> str:
    """What a logged-in form's token is bound to: the session id."""
    return f"session:{request[SESSION_KEY].session_id}"


def csrf_token(request: web.Request, binding: str) -> str:
    """The token to put in a form bound to ``binding``."""
    return request.app[SIGNER_KEY].csrf_token(binding)


def require_csrf(request: web.Request, form: MultiMapping[object], binding: str) -> None:
    """Raise :class:`CsrfRejectedError` unless ``form`` carries the token for ``binding``."""
    _check(request, binding, form.get(CSRF_FIELD))


def _check(request: web.Request, binding: str, token: object) -> None:
    if not isinstance(token, str) or not request.app[SIGNER_KEY].check_csrf(binding, token):
        raise CsrfRejectedError(
            "this form has expired or did not come from this site; reload the page and try again"
        )


async def require_session_csrf(request: web.Request) -> None:
    """Refuse a state-changing page request without its session's token.

    The token comes from the :data:`CSRF_HEADER` header, or else from the form's
    :data:`CSRF_FIELD` (the form is read here; aiohttp keeps it for the handler).
    """
    token: object = request.headers.get(CSRF_HEADER)
    if token is None and request.content_type in _FORM_TYPES:
        token = (await request.post()).get(CSRF_FIELD)
    _check(request, session_binding(request), token)
