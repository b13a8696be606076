"""What a rollout test drives: the central service, its API as staff use it, and a fleet.

:func:`rollout_rig` starts the real central service (its rollout runner included) against
the test broker and a database, stores firmware the way an upload does, gives API tokens
to a few staff members of different roles, and watches every firmware offer the broker
carries. The simulated fleet (:mod:`tests.harness.sim_fleet`) comes with it.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posfleet.contract import Channel, Topic
from posfleet.firmware.artifact_store import ArtifactStore
from posfleet.firmware.artifacts import Artifacts
from posfleet.simulator.firmware_images import DEFAULT_MODELS, make_image
from posfleet.store.accounts import Role, create_api_token, list_audit
from tests.harness.central_service import CentralUnderTest, start_central
from tests.harness.firmware_release import ReleaseKey, release_key, trusting
from tests.harness.mqtt_probe import MqttProbe
from tests.harness.private_broker import PrivateBroker
from tests.harness.sim_fleet import SimFleet, TerminalPlan
from tests.harness.waiting import async_wait_for

__all__ = ["ApiAnswer", "OfferWatch", "RolloutRig", "Staff", "rollout_rig"]

IMAGE_SIZE = 32 * 1024
FINAL_ROLLOUT_STATES = ("finished", "aborted", "rolled_back")


@dataclass(frozen=True, slots=True)
class ApiAnswer:
    """An HTTP answer: status and JSON body."""

    status: int
    body: Any


@dataclass
class Staff:
    """API tokens of staff members by name, with their roles."""

    tokens: dict[str, str] = field(default_factory=dict)


class OfferWatch:
    """Every ``fw/offer`` the broker delivers, as the centre's broker user sees them."""

    def __init__(self, broker: PrivateBroker) -> None:
        self._probe: MqttProbe = broker.probe(broker.central)
        self._probe.subscribe(f"pos/v1/+/{Channel.FW_OFFER.value}")

    def offers(self) -> dict[str, list[dict[str, Any]]]:
        """The offers seen so far per terminal, oldest first."""
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for message in self._probe.received():
            found[Topic.parse(message.topic).terminal_id].append(json.loads(message.payload))
        return dict(found)

    def wire_ids(self) -> dict[str, Counter[str]]:
        """Per terminal: how often each wire action id (``<action>.<attempt>``) came."""
        return {
            tid: Counter(str(o["action_id"]) for o in offers)
            for tid, offers in self.offers().items()
        }

    def close(self) -> None:
        """Stop listening."""
        self._probe.close()


@dataclass
class RolloutRig:
    """One or more central instances on one database, a fleet, staff and the offers."""

    centrals: list[CentralUnderTest]
    artifacts: Artifacts
    key: ReleaseKey
    fleet: SimFleet
    staff: Staff
    watch: OfferWatch
    tag: str

    @property
    def central(self) -> CentralUnderTest:
        """The first instance (the one staff talk to unless a test says otherwise)."""
        return self.centrals[0]

    @property
    def merchants(self) -> list[str]:
        """The two merchants of this test's shops."""
        return [f"M-{self.tag}-{k}" for k in range(2)]

    @property
    def our_terminals(self) -> dict[str, list[str]]:
        """A target filter for this test's terminals alone: the session's broker hands
        every new central instance the retained state of earlier tests' terminals."""
        return {"merchant_ids": self.merchants}

    def plans(
        self, count: int, *, prefix: str = "T", sites: int = 1, start: int = 0
    ) -> list[TerminalPlan]:
        """``count`` terminals spread round-robin over ``sites`` shops of two merchants."""
        return [
            TerminalPlan(
                f"{prefix}{self.tag}-{n:03d}",
                site_id=f"SITE-{self.tag}-{n % sites}",
                merchant_id=self.merchants[(n % sites) % 2],
            )
            for n in range(start, start + count)
        ]

    async def upload(self, version: str, **image: Any) -> str:
        """Store a signed image of ``version`` for both simulator models; its label."""
        data = make_image(version, IMAGE_SIZE, **image)
        signed = self.key.sign(data, version=version, models=DEFAULT_MODELS)

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        await self.artifacts.upload(signed, chunks(), uploaded_by="user:olga")
        return f"pos-os@{version}"

    async def registered(self, terminal_ids: Iterable[str], *, version: str = "2.4.1") -> None:
        """Wait until the registry shows every terminal online with ``version``."""
        wanted = set(terminal_ids)

        async def known() -> bool:
            found = await self.central.terminals()
            return all(
                (t := found.get(tid)) is not None
                and t["online"]
                and t["firmware_version"] == version
                for tid in wanted
            )

        await async_wait_for(
            known, timeout=60, interval=0.25, description=f"{len(wanted)} terminals on {version}"
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        as_: str = "olga",
        json_body: Any = None,
        central: CentralUnderTest | None = None,
    ) -> ApiAnswer:
        """Call the API as staff member ``as_``."""
        central = central or self.central
        async with central.http.request(
            method,
            central.service.url + path,
            json=json_body,
            headers={"Authorization": f"Bearer {self.staff.tokens[as_]}"},
        ) as response:
            return ApiAnswer(response.status, await response.json(content_type=None))

    async def create(self, name: str, artifact: str, policy: dict[str, Any], **more: Any) -> int:
        """Create a rollout as olga (ops); its id."""
        body = {
            "name": name,
            "artifact": artifact,
            "target": self.our_terminals,
            "policy": policy,
            "reason_code": "feature",
        }
        answer = await self.call("POST", "/api/v1/rollouts", json_body=body | more)
        assert answer.status == 201, answer
        return int(_rollout(answer.body)["id"])

    async def preview(self, rollout_id: int, *, as_: str = "olga") -> Any:
        """The dry-run preview."""
        answer = await self.call(
            "POST", f"/api/v1/rollouts/{rollout_id}/preview?per_wave=1000", as_=as_
        )
        assert answer.status == 200, answer
        return answer.body

    async def command(
        self,
        rollout_id: int,
        verb: str,
        *,
        as_: str = "olga",
        reason_code: str = "feature",
        reason: str = "",
    ) -> ApiAnswer:
        """Approve, start, pause ... as ``as_``; the answer, whatever its status."""
        body = {"reason_code": reason_code, "reason": reason}
        return await self.call(
            "POST", f"/api/v1/rollouts/{rollout_id}/{verb}", as_=as_, json_body=body
        )

    async def show(self, rollout_id: int, *, central: CentralUnderTest | None = None) -> Any:
        """``GET /api/v1/rollouts/{id}``."""
        answer = await self.call("GET", f"/api/v1/rollouts/{rollout_id}", central=central)
        assert answer.status == 200, answer
        return answer.body

    async def until_state(self, rollout_id: int, *states: str, within_s: float = 90) -> Any:
        """Wait until the rollout is in one of ``states``; its JSON then."""

        async def reached() -> Any:
            shown = await self.show(rollout_id)
            state = _rollout(shown)["state"]
            if state in states:
                return shown
            assert state not in FINAL_ROLLOUT_STATES, f"rollout ended {state}: {shown}"
            return None

        return await async_wait_for(
            reached, timeout=within_s, interval=0.25, description=f"rollout in {states}"
        )

    async def until_wave(self, rollout_id: int, wave: int, state: str) -> Any:
        """Wait until wave ``wave`` (0: the first) is in ``state``; the rollout's JSON then."""

        async def reached() -> Any:
            shown = await self.show(rollout_id)
            found = [w for w in _rollout(shown)["waves"] if w["wave"] == wave]
            return shown if found and found[0]["state"] == state else None

        return await async_wait_for(
            reached, timeout=60, interval=0.1, description=f"wave {wave + 1} {state}"
        )

    async def actions(self, **params: str) -> list[dict[str, Any]]:
        """Firmware Actions as the API lists them."""
        body = await self.central.get_json("/api/v1/firmware/actions", limit="500", **params)
        return list(body["items"])

    async def audit(self, action_prefix: str) -> list[Any]:
        """Audit entries whose action starts with ``action_prefix``, oldest first."""
        async with self.central.service.engine.connect() as conn:
            entries = await list_audit(conn, limit=1000)
        return [e for e in reversed(entries) if e.action.startswith(action_prefix)]


def _rollout(body: Any) -> Any:
    """The rollout object of an answer (bare, or under ``rollout``)."""
    return body["rollout"] if isinstance(body, dict) and "rollout" in body else body


STAFF_ROLES = {"olga": Role.OPS, "piotr": Role.OPS, "sam": Role.SUPPORT}
"""olga creates and starts, piotr is the second approver, sam is on the support desk."""


@asynccontextmanager
async def rollout_rig(
    broker: PrivateBroker,
    tmp_path: Path,
    *,
    database_url: str | None = None,
    instances: int = 1,
    central_settings: dict[str, Any] | None = None,
    **fleet_options: Any,
) -> AsyncIterator[RolloutRig]:
    """The central service (``instances`` of it on one database), a fleet, staff tokens."""
    key = release_key(tmp_path / "keys", "rel-rollout")
    var = tmp_path / "central"
    url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'central.db'}"
    overrides = dict(central_settings or {})
    if instances > 1:
        overrides.setdefault("share_group", f"central-{uuid.uuid4().hex[:8]}")
    async with AsyncExitStack() as stack:
        centrals = []
        for _ in range(instances):
            # One var_dir: the instances share artifacts and secrets, as a deployment does.
            centrals.append(
                await stack.enter_async_context(start_central(broker, var, url, **overrides))
            )
        engine = centrals[0].service.engine
        staff = Staff()
        async with engine.begin() as conn:
            for name, role in STAFF_ROLES.items():
                staff.tokens[name] = await create_api_token(conn, name, role)
        watch = OfferWatch(broker)
        stack.callback(watch.close)
        fleet = await stack.enter_async_context(
            SimFleet(broker, tmp_path / "fleet", key, **fleet_options)
        )
        artifacts = Artifacts(engine, ArtifactStore(var / "artifacts"), trusting(key))
        # Terminal ids unique to this run: the session's broker keeps retained messages.
        tag = uuid.uuid4().hex[:6].upper()
        yield RolloutRig(centrals, artifacts, key, fleet, staff, watch, tag)
