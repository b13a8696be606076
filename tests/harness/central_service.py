"""Start the real central service (ingest + dashboard) against a test broker and database."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from posfleet.central.service import RunningCentral, running_central
from posfleet.central.settings import CentralSettings
from posfleet.store.accounts import Role, create_api_token
from tests.harness.private_broker import PrivateBroker

_instances = itertools.count(1)


@dataclass
class CentralUnderTest:
    """A running central service with an admin API client."""

    service: RunningCentral
    token: str
    http: aiohttp.ClientSession

    async def get_json(self, path: str, **params: str) -> Any:
        """GET ``path`` from the API with the admin token; fail on a non-200 answer."""
        async with self.http.get(
            self.service.url + path,
            params=params,
            headers={"Authorization": f"Bearer {self.token}"},
        ) as response:
            body = await response.json()
            assert response.status == 200, body
            return body

    async def terminals(self) -> dict[str, Any]:
        """Every terminal the API lists, by id."""
        body = await self.get_json("/api/v1/terminals", limit="500")
        return {item["terminal_id"]: item for item in body["items"]}


@asynccontextmanager
async def start_central(
    broker: PrivateBroker, var_dir: Path, database_url: str, **overrides: Any
) -> AsyncIterator[CentralUnderTest]:
    """Run the central service on a free port until the block ends.

    ``overrides`` are further :class:`CentralSettings` (``share_group``, intervals ...).
    """
    fields: dict[str, Any] = {
        "var_dir": var_dir,
        "database_url": database_url,
        "broker_url": broker.central_url,
        "broker_username": broker.central.username,
        "broker_password": broker.central.password,
        "http_port": 0,
        "client_id": f"central-test-{next(_instances)}-{var_dir.name}",
    }
    settings = CentralSettings(**(fields | overrides))
    async with running_central(settings) as service:
        await service.ingest.wait_connected(10)
        async with service.engine.begin() as conn:
            token = await create_api_token(conn, "e2e", Role.ADMIN)
        async with aiohttp.ClientSession() as http:
            yield CentralUnderTest(service, token, http)
