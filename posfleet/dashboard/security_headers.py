"""Security headers on every response, errors and static files included.

HSTS (``Strict-Transport-Security``) goes out only when the dashboard is reached over
TLS: served by it directly, or through a TLS-terminating proxy the settings declare
(``dashboard_behind_tls_proxy``). On plain http a browser ignores it anyway, and sending
it from a development listener would pin ``localhost`` to https.
"""

from __future__ import annotations

from aiohttp import web

from posfleet.dashboard.page_layout import STATIC_PREFIX

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "base-uri 'none'",
        "object-src 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

BEHIND_TLS_PROXY_KEY = web.AppKey("behind_tls_proxy", bool)
"""True when a TLS-terminating proxy forwards to this plain-http listener."""

HSTS_MAX_AGE_S = 365 * 24 * 3600
STRICT_TRANSPORT_SECURITY = f"max-age={HSTS_MAX_AGE_S}; includeSubDomains"

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # For browsers that predate CSP frame-ancestors.
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def served_over_tls(request: web.Request) -> bool:
    """True if the browser reached us over https (directly, or via a declared TLS proxy).

    A client's own ``X-Forwarded-Proto`` is not trusted: anyone could send it.
    """
    return request.secure or request.config_dict.get(BEHIND_TLS_PROXY_KEY, False)


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: set the headers unless a handler chose its own."""
    for name, value in _HEADERS.items():
        response.headers.setdefault(name, value)
    if served_over_tls(request):
        response.headers.setdefault("Strict-Transport-Security", STRICT_TRANSPORT_SECURITY)
    if not request.path.startswith(STATIC_PREFIX):
        # Fleet data and session pages must not linger in shared or browser caches.
        response.headers.setdefault("Cache-Control", "no-store")
