"""Errors of the dashboard."""

from __future__ import annotations


class DashboardError(Exception):
    """Base class of every error raised by :mod:`posfleet.dashboard`."""


class RouteAccessUndeclaredError(DashboardError):
    """A route was registered without saying who may call it (``requires`` or ``public``).

    Raised when the app is built, so a forgotten decorator fails the start-up, not open.
    """

    def __init__(self, route: str) -> None:
        super().__init__(f"route {route} declares no access rule: decorate it with requires()")
        self.route = route


class RequestRejectedError(DashboardError):
    """A request the dashboard refuses; rendered as a JSON error on the API.

    ``code`` is a stable machine-readable word, ``message`` a sentence for a person.
    """

    status = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameterError(RequestRejectedError):
    """A query parameter or form field with a value the dashboard cannot use."""

    status = 400
    code = "invalid_parameter"

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name

    @property
    def invalid_params(self) -> list[tuple[str, str]]:
        """Each refused parameter with the reason: ``(name, reason)``."""
        return [(self.name, self.message)]


class UnknownParameterError(InvalidParameterError):
    """Query parameters the route does not take: refused, so a typo never widens a filter."""

    def __init__(self, names: list[str], accepted: list[str]) -> None:
        shown = ", ".join(repr(n if len(n) <= 40 else n[:40] + "...") for n in names)
        plural = "s" if len(names) > 1 else ""
        super().__init__(
            names[0], f"unknown query parameter{plural} {shown}; expected {', '.join(accepted)}"
        )
        self.names = names
        self.accepted = accepted

    @property
    def invalid_params(self) -> list[tuple[str, str]]:
        """Each unknown parameter, with the parameters the route takes."""
        reason = f"unknown parameter; expected {', '.join(self.accepted)}"
        return [(name, reason) for name in self.names]


class NotAuthenticatedError(RequestRejectedError):
    """No credentials, or credentials that are unknown, revoked or expired."""

    status = 401
    code = "unauthenticated"


class ForbiddenError(RequestRejectedError):
    """Authenticated, but the role does not permit this."""

    status = 403
    code = "forbidden"


class CsrfRejectedError(ForbiddenError):
    """A form post without the CSRF token bound to the browser's session."""

    code = "csrf_rejected"


class NotFoundError(RequestRejectedError):
    """The requested object does not exist."""

    status = 404
    code = "not_found"
