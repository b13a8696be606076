"""The staff dashboard: HTML pages, the REST API, authentication and roles.

A thin aiohttp layer over the store and the domain packages.
"""

from posfleet.dashboard.access import principal, public, requires
from posfleet.dashboard.app import DEFAULT_SESSION_LIFETIME, create_app
from posfleet.dashboard.app_keys import ENGINE_KEY, PRINCIPAL_KEY, REJECTIONS_KEY
from posfleet.dashboard.errors import (
    DashboardError,
    ForbiddenError,
    InvalidParameterError,
    NotAuthenticatedError,
    NotFoundError,
    RequestRejectedError,
)

__all__ = [
    "DEFAULT_SESSION_LIFETIME",
    "ENGINE_KEY",
    "PRINCIPAL_KEY",
    "REJECTIONS_KEY",
    "DashboardError",
    "ForbiddenError",
    "InvalidParameterError",
    "NotAuthenticatedError",
    "NotFoundError",
    "RequestRejectedError",
    "create_app",
    "principal",
    "public",
    "requires",
]
