"""Refused and failed requests rendered for their audience: JSON on the API, HTML elsewhere.

The human-readable texts (a problem's ``title`` and ``detail``, the error page) are in the
request's language: the title from the marked status phrases below, the detail looked up
in the catalogues when it is a marked text (the keys and ``code`` stay English).

Every refusal is counted in :class:`~posfleet.dashboard.rejections.Rejections`.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web

from posfleet.dashboard.access import Handler, is_api
from posfleet.dashboard.app_keys import REJECTIONS_KEY
from posfleet.dashboard.errors import (
    InvalidParameterError,
    NotAuthenticatedError,
    RequestRejectedError,
)
from posfleet.dashboard.templating import _, render_public_page
from posfleet.i18n import gettext

log = logging.getLogger(__name__)

_CODE_FOR_STATUS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


PROBLEM_CONTENT_TYPE = "application/problem+json"

_STATUS_TITLES = {
    400: _("Bad Request"),
    401: _("Unauthorized"),
    403: _("Forbidden"),
    404: _("Not Found"),
    405: _("Method Not Allowed"),
    409: _("Conflict"),
    413: _("Request Entity Too Large"),
    415: _("Unsupported Media Type"),
    422: _("Unprocessable Entity"),
    429: _("Too Many Requests"),
    500: _("Internal Server Error"),
    503: _("Service Unavailable"),
}
"""The problem titles a person may read, marked for translation (HTTP's own phrases)."""


def status_title(status: int) -> str:
    """The status phrase of ``status`` in the current language."""
    known = _STATUS_TITLES.get(status)
    return gettext(known) if known is not None else HTTPStatus(status).phrase


def json_error(
    status: int,
    code: str,
    message: str,
    invalid_params: list[tuple[str, str]] | None = None,
) -> web.Response:
    """The API's error body, an RFC 9457 problem: ``application/problem+json``.

    ``{"type": "about:blank", "title": <HTTP status phrase>, "status", "detail": message,
    "code": <stable word>}``, and for refused parameters ``"invalid_params": [{"name",
    "reason"}, ...]``.
    """
    problem: dict[str, object] = {
        "type": "about:blank",
        "title": status_title(status),
        "status": status,
        "detail": gettext(message),
        "code": code,
    }
    if invalid_params:
        problem["invalid_params"] = [
            {"name": name, "reason": gettext(reason)} for name, reason in invalid_params
        ]
    response = web.json_response(problem, status=status, content_type=PROBLEM_CONTENT_TYPE)
    if status == HTTPStatus.UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = 'Bearer realm="posfleet"'
    return response


def html_error(request: web.Request, status: int, message: str) -> web.Response:
    """An HTML page with ``status`` that says what went wrong (``error.html``)."""
    context = {"status": status, "message": gettext(message)}
    return render_public_page(request, "error.html", context, status=status)


@web.middleware
async def render_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn refusals and crashes into responses; never let one request take the server down."""
    rejections = request.app[REJECTIONS_KEY]
    try:
        return await handler(request)
    except RequestRejectedError as exc:
        rejections.count(exc.code, f"{request.method} {request.path}: {exc.message}")
        if is_api(request):
            invalid = exc.invalid_params if isinstance(exc, InvalidParameterError) else None
            return json_error(exc.status, exc.code, exc.message, invalid)
        if isinstance(exc, NotAuthenticatedError):
            # Fragments and posts from a page whose session ended: the script reloads.
            return web.Response(status=exc.status, text=exc.message)
        return html_error(request, exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status < HTTPStatus.BAD_REQUEST:
            raise
        code = _CODE_FOR_STATUS.get(exc.status, "error")
        rejections.count(code, f"{request.method} {request.path}: {exc.reason}")
        if is_api(request):
            return json_error(exc.status, code, exc.reason)
        raise
    except Exception:
        if not is_api(request):
            raise
        log.exception("unexpected error in %s %s", request.method, request.path)
        return json_error(500, "internal", _("internal error; the server log has the details"))
