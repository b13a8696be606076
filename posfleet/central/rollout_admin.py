"""What ``posfleet rollout ...`` does, apart from argument parsing and output.

Two ways with one face (:class:`RolloutApi`): :class:`LocalRollouts` works on this
installation's database through :mod:`posfleet.firmware.rollouts`, as the person at the
central service's shell (the ops role); :class:`RemoteRollouts` goes through a central
service's ``/api/v1/rollouts`` with an API token, whose role the server checks. Both
answer in the API's JSON shapes (:mod:`posfleet.dashboard.rollout_json`), so one
renderer shows either, and both validate a create request with the API's own schema.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.central.errors import CentralError
from posfleet.central.settings import CentralSettings

log = logging.getLogger(__name__)

LOCAL_ROLE = "ops"
"""The role of someone at the central service's shell: they can reach its database
anyway, and ops is what steering a rollout takes."""


class RolloutAdminError(CentralError):
    """A rollout command that cannot be done; the message says why."""


class RolloutApi(Protocol):
    """The rollout operations, answered as the API's JSON."""

    async def create(self, body: dict[str, Any]) -> Any:
        """Create a draft rollout from a ``POST /api/v1/rollouts`` body."""

    async def preview(self, rollout_id: int) -> Any:
        """The dry-run preview (a draft becomes previewed)."""

    async def command(self, rollout_id: int, verb: str, body: dict[str, Any]) -> Any:
        """Approve, start, pause, resume, abort or roll back, with a reason."""

    async def list(self, *, states: list[str], limit: int) -> Any:
        """Rollouts, newest first: ``{"items": [...]}``."""

    async def get(self, rollout_id: int) -> Any:
        """One rollout with its waves, gate figures and history."""


class LocalRollouts:
    """The operations on this installation's database."""

    def __init__(self, engine: AsyncEngine, *, actor: str) -> None:
        self.engine = engine
        self.actor = actor

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: CentralSettings, *, actor: str) -> AsyncIterator[LocalRollouts]:
        """The database of ``settings``, migrated to the latest revision, for one command."""
        from posfleet.store.engine import create_engine
        from posfleet.store.migrate import upgrade_engine

        logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.resolved_database_url)
        try:
            await upgrade_engine(engine)
            yield cls(engine, actor=actor)
        finally:
            await engine.dispose()

    async def _do(self, operation: Any) -> Any:
        """Run ``operation(service)`` and turn refusals into one clear line."""
        from posfleet.dashboard.errors import RequestRejectedError
        from posfleet.dashboard.rollout_service import RolloutService
        from posfleet.store.accounts import Role

        service = RolloutService(self.engine, actor=self.actor, role=Role(LOCAL_ROLE))
        try:
            return await operation(service)
        except RequestRejectedError as exc:
            raise RolloutAdminError(exc.message) from None

    async def create(self, body: dict[str, Any]) -> Any:
        """Create a draft rollout from a ``POST /api/v1/rollouts`` body."""
        return (await self._do(lambda s: s.create(body))).to_json()

    async def preview(self, rollout_id: int) -> Any:
        """The dry run (a draft becomes previewed), as ``POST .../preview`` answers."""
        from posfleet.dashboard.rollout_service import preview_json

        record, preview = await self._do(lambda s: s.preview(rollout_id, store=True))
        return preview_json(record, preview)

    async def command(self, rollout_id: int, verb: str, body: dict[str, Any]) -> Any:
        """Approve, start, pause, resume, abort or roll back, with a reason."""
        return (await self._do(lambda s: s.command(rollout_id, verb, body))).to_json()

    async def list(self, *, states: list[str], limit: int) -> Any:
        """Rollouts, newest first: ``{"items": [...]}``."""
        from posfleet.dashboard.errors import RequestRejectedError
        from posfleet.dashboard.rollout_service import parse_states

        try:
            wanted = parse_states(",".join(states))
        except RequestRejectedError as exc:
            raise RolloutAdminError(f"--state: {exc.message}") from None
        items = await self._do(lambda s: s.list(states=wanted, limit=limit))
        return {"items": [r.to_json() for r in items]}

    async def get(self, rollout_id: int) -> Any:
        """One rollout with its waves, gate figures and history."""
        return (await self._do(lambda s: s.get(rollout_id))).to_json()


class RemoteRollouts:
    """The operations through a central service's API, with an API token."""

    def __init__(self, server: str, token: str) -> None:
        self.base = server.rstrip("/")
        self.token = token

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import aiohttp

        url = f"{self.base}{path}"
        headers = {"Authorization": f"Bearer {self.token}"}
        timeout = aiohttp.ClientTimeout(total=120)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(method, url, headers=headers, **kwargs) as response,
            ):
                status, body = response.status, await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise RolloutAdminError(f"cannot reach {url}: {exc}") from exc
        if status >= 400:
            detail = body.get("detail") if isinstance(body, dict) else None
            raise RolloutAdminError(f"the server refused ({status}): {detail or body}")
        return body

    async def create(self, body: dict[str, Any]) -> Any:
        """``POST /api/v1/rollouts``."""
        return await self._call("POST", "/api/v1/rollouts", json=body)

    async def preview(self, rollout_id: int) -> Any:
        """``POST /api/v1/rollouts/{id}/preview``."""
        return await self._call("POST", f"/api/v1/rollouts/{rollout_id}/preview")

    async def command(self, rollout_id: int, verb: str, body: dict[str, Any]) -> Any:
        """``POST /api/v1/rollouts/{id}/{verb}`` with the reason."""
        return await self._call("POST", f"/api/v1/rollouts/{rollout_id}/{verb}", json=body)

    async def list(self, *, states: list[str], limit: int) -> Any:
        """``GET /api/v1/rollouts``."""
        params = {"limit": str(limit)}
        if states:
            params["state"] = ",".join(states)
        return await self._call("GET", "/api/v1/rollouts", params=params)

    async def get(self, rollout_id: int) -> Any:
        """``GET /api/v1/rollouts/{id}``."""
        return await self._call("GET", f"/api/v1/rollouts/{rollout_id}")
