"""Refused and failed requests rendered for their audience: JSON on the API, HTML elsewhere.

Every refusal is counted in :class:`~posfleet.dashboard.rejections.Rejections`.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web

from posfleet.dashboard.access import Handler, is_api
from posfleet.dashboard.app_keys import REJECTIONS_KEY
from posfleet.dashboard.errors import NotAuthenticatedError, RequestRejectedError
from posfleet.dashboard.page_layout import error_page

log = logging.getLogger(__name__)

_CODE_FOR_STATUS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def json_error(status: int, code: str, message: str) -> web.Response:
    """The API's error body: ``{"error": {"code": ..., "message": ...}}``."""
    response = web.json_response({"error": {"code": code, "message": message}}, status=status)
    if status == HTTPStatus.UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = 'Bearer realm="posfleet"'
    return response


def html_error(status: int, message: str) -> web.Response:
    """An HTML error page with ``status``."""
    return web.Response(status=status, text=error_page(status, message), content_type="text/html")


@web.middleware
async def render_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn refusals and crashes into responses; never let one request take the server down."""
    rejections = request.app[REJECTIONS_KEY]
    try:
        return await handler(request)
    except RequestRejectedError as exc:
        rejections.count(exc.code, f"{request.method} {request.path}: {exc.message}")
        if is_api(request):
            return json_error(exc.status, exc.code, exc.message)
        if isinstance(exc, NotAuthenticatedError):
            # Fragments and posts from a page whose session ended: the script reloads.
            return web.Response(status=exc.status, text=exc.message)
        return html_error(exc.status, exc.message)
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
        return json_error(500, "internal", "internal error; the server log has the details")
