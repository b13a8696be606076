"""What ``posfleet firmware push|actions|cancel`` do, apart from argument parsing and output.

Like the other admin commands they work on this installation (its database, and its
broker with the central service's credentials, so the offers go out at once) or, with a
server URL, through the central service's API with an ops token. Either way the
results come back as the API's JSON shapes, so one renderer shows both.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pydantic

from posfleet.central.errors import CentralError
from posfleet.central.settings import CentralSettings

log = logging.getLogger(__name__)

BROKER_WAIT_S = 5.0
"""How long a local push waits for the broker before leaving its offers to the service."""


class FirmwareActionAdminError(CentralError):
    """A push, listing or cancel that cannot be done; the message says why."""


@dataclass(frozen=True, slots=True)
class PushBodyFields:
    """A push as typed on the command line (the API's body fields)."""

    artifact: str
    terminal_ids: list[str]
    window: str | None = None
    weekdays: str | None = None
    deadline: str | None = None
    allow_downgrade_confirmed: bool = False
    reason: str = ""

    def body(self) -> dict[str, Any]:
        """The JSON body of ``POST /api/v1/firmware/actions``."""
        fields = {
            "artifact": self.artifact,
            "terminal_ids": self.terminal_ids,
            "window": self.window,
            "weekdays": self.weekdays,
            "deadline": self.deadline,
            "allow_downgrade_confirmed": self.allow_downgrade_confirmed,
            "reason": self.reason,
        }
        return {k: v for k, v in fields.items() if v is not None}


def _dump(value: Any) -> Any:
    return pydantic.TypeAdapter(Any).dump_python(value, mode="json")


@asynccontextmanager
async def _engine(settings: CentralSettings) -> AsyncIterator[Any]:
    from posfleet.store.engine import create_engine
    from posfleet.store.migrate import upgrade_engine

    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.resolved_database_url)
    try:
        await upgrade_engine(engine)
        yield engine
    finally:
        await engine.dispose()


async def push_local(settings: CentralSettings, push: PushBodyFields, *, actor: str) -> Any:
    """Create and offer the Actions in this installation; the API's push answer (a dict).

    The offers go out through this installation's broker; if it does not answer within
    :data:`BROKER_WAIT_S`, the Actions stay ``created`` and the running central service
    offers them (``"offered": 0`` says so).
    """
    from posfleet.broker_bridge.downlink import MqttPublisher
    from posfleet.broker_bridge.errors import NotSubscribedError
    from posfleet.central.service import command_login, firmware_offers
    from posfleet.dashboard.firmware_actions_api import BodyInvalidError, PushBody
    from posfleet.firmware.errors import ArtifactError

    try:
        request = PushBody.model_validate(push.body()).to_request()
    except pydantic.ValidationError as exc:
        raise FirmwareActionAdminError(str(exc.errors()[0]["msg"])) from None
    except BodyInvalidError as exc:
        raise FirmwareActionAdminError(exc.message) from None
    async with _engine(settings) as engine, MqttPublisher(command_login(settings)) as channel:
        offers = firmware_offers(settings, engine, channel)
        try:
            await channel.wait_ready(BROKER_WAIT_S)
        except NotSubscribedError as exc:
            log.warning("%s; the central service will publish the offers", exc)
            offers.publisher = None
        try:
            result = await offers.push(request, actor=actor)
        except ArtifactError as exc:
            raise FirmwareActionAdminError(str(exc)) from None
    a = result.artifact
    return {
        "artifact": {"id": a.id, "name": a.name, "version": a.version, "sha256": a.sha256},
        "created": _dump(result.created),
        "refused": _dump(result.refused),
        "offered": result.offered,
    }


async def list_local(
    settings: CentralSettings,
    *,
    states: list[str],
    terminal_id: str | None,
    artifact: str | None,
    limit: int,
) -> Any:
    """The API's list answer from this installation: items and counts per state."""
    from posfleet.dashboard.firmware_actions_api import counts_json
    from posfleet.firmware.action_records import count_by_state, list_actions
    from posfleet.firmware.action_states import ActionState
    from posfleet.firmware.artifacts import find_artifact
    from posfleet.firmware.errors import ArtifactError

    try:
        wanted = [ActionState(s) for s in states]
    except ValueError:
        names = ", ".join(s.value for s in ActionState)
        raise FirmwareActionAdminError(f"--state takes {names}") from None
    async with _engine(settings) as engine, engine.connect() as conn:
        artifact_id = None
        if artifact:
            try:
                artifact_id = (await find_artifact(conn, artifact)).id
            except ArtifactError as exc:
                raise FirmwareActionAdminError(str(exc)) from None
        items = await list_actions(
            conn,
            states=wanted or None,
            terminal_id=terminal_id,
            artifact_id=artifact_id,
            limit=limit,
        )
        counts = await count_by_state(conn, terminal_id=terminal_id, artifact_id=artifact_id)
    return {"items": _dump(items), "counts": counts_json(counts)}


async def cancel_local(
    settings: CentralSettings, action_id: int, *, actor: str, reason: str
) -> Any:
    """Cancel an Action in this installation (audited); the cancelled Action as JSON.

    Its terminal is told through this installation's broker (``terminal_notice``); if
    the broker does not answer within :data:`BROKER_WAIT_S`, the running central
    service tells it on its next round.
    """
    from posfleet.broker_bridge.downlink import MqttPublisher
    from posfleet.broker_bridge.errors import NotSubscribedError
    from posfleet.central.service import command_login, firmware_offers
    from posfleet.firmware.errors import FirmwareError

    async with _engine(settings) as engine, MqttPublisher(command_login(settings)) as channel:
        offers = firmware_offers(settings, engine, channel)
        try:
            await channel.wait_ready(BROKER_WAIT_S)
        except NotSubscribedError as exc:
            log.warning("%s; the central service will tell the terminal", exc)
            offers.publisher = None
        try:
            cancelled = await offers.cancel_and_tell(action_id, actor=actor, reason=reason)
        except FirmwareError as exc:
            raise FirmwareActionAdminError(str(exc)) from None
    notice = {"sent": cancelled.notice.sent, "text": cancelled.notice.text}
    return {**_dump(cancelled.action), "terminal_notice": notice}


class RemoteApi:
    """The same three operations through a central service's API, with an API token."""

    def __init__(self, server: str, token: str) -> None:
        self.base = server.rstrip("/")
        self.token = token

    async def _call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        import aiohttp

        url = f"{self.base}{path}"
        headers = {"Authorization": f"Bearer {self.token}"}
        timeout = aiohttp.ClientTimeout(total=120)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(method, url, headers=headers, **kwargs) as response,
            ):
                return response.status, await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise FirmwareActionAdminError(f"cannot reach {url}: {exc}") from exc

    @staticmethod
    def _refused(status: int, body: Any) -> FirmwareActionAdminError:
        detail = body.get("detail") if isinstance(body, dict) else None
        return FirmwareActionAdminError(f"the server refused ({status}): {detail or body}")

    async def push(self, push: PushBodyFields) -> Any:
        """``POST /api/v1/firmware/actions``; a 422 (every terminal refused) is an answer too."""
        status, body = await self._call("POST", "/api/v1/firmware/actions", json=push.body())
        if status == 422 and isinstance(body, dict) and "refused" in body:
            return {"artifact": body.get("artifact"), "created": [], "refused": body["refused"]}
        if status != 201:
            raise self._refused(status, body)
        return body

    async def list(
        self, *, states: list[str], terminal_id: str | None, artifact: str | None, limit: int
    ) -> Any:
        """``GET /api/v1/firmware/actions`` with the filters."""
        params: dict[str, str] = {"limit": str(limit)}
        if states:
            params["state"] = ",".join(states)
        if terminal_id:
            params["terminal_id"] = terminal_id
        if artifact:
            status, found = await self._call("GET", f"/api/v1/firmware/artifacts/{artifact}")
            if status != 200:
                raise self._refused(status, found)
            params["artifact_id"] = str(found["artifact"]["id"])
        status, body = await self._call("GET", "/api/v1/firmware/actions", params=params)
        if status != 200:
            raise self._refused(status, body)
        return body

    async def cancel(self, action_id: int, *, reason: str) -> Any:
        """``POST /api/v1/firmware/actions/{id}/cancel``."""
        status, body = await self._call(
            "POST", f"/api/v1/firmware/actions/{action_id}/cancel", json={"reason": reason}
        )
        if status != 200:
            raise self._refused(status, body)
        return body
