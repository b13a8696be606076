"""Typed keys for what the dashboard shares between handlers (app) and per request."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.downlink import Publisher
from posfleet.dashboard.login_throttle import LoginThrottle
from posfleet.dashboard.rejections import Rejections
from posfleet.dashboard.session_tokens import Session, SessionSigner
from posfleet.store.accounts import Principal

ENGINE_KEY = web.AppKey("engine", AsyncEngine)
SIGNER_KEY = web.AppKey("session_signer", SessionSigner)
LOGIN_THROTTLE_KEY = web.AppKey("login_throttle", LoginThrottle)
REJECTIONS_KEY = web.AppKey("rejections", Rejections)

PRINCIPAL_KEY = web.RequestKey("principal", Principal)
"""Who made the request; set by the authentication middleware on every protected route."""

SESSION_KEY = web.RequestKey("session", Session)
"""The browser session of a request authenticated by cookie (absent for API tokens)."""

COMMANDS_KEY = web.AppKey[Publisher]("command_publisher")
"""Optional: what issues staff commands to terminals (the central service's downlink);
without it (no broker) a command is recorded queued and sent once a central service runs."""
