"""Pushing an artifact to terminals: one Action each, and the ``fw/offer`` that tells them.

:class:`FirmwareOffers` is what the API and the CLI call. A push checks every terminal
against the manifest (:mod:`~posfleet.firmware.push_checks`), creates the Actions and the
audit entry in one transaction, and then publishes one offer per Action through the
broker bridge's :class:`~posfleet.broker_bridge.downlink.Publisher` (the central
service's MQTT downlink; :class:`~posfleet.broker_bridge.downlink.MemoryPublisher` in
tests). Each offer carries a fresh download token. An offer that cannot be published now
(no broker) leaves its Action ``created``; the sweeper
(:mod:`~posfleet.firmware.action_sweeper`) publishes it later, re-offers open Actions
when their terminal reconnects, and times out the overdue ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.broker_bridge.downlink import Publisher
from posfleet.contract import (
    Channel,
    FirmwareManifest,
    FirmwareOffer,
    MaintenanceWindow,
    TopicError,
    utcnow,
    validate_terminal_id,
)
from posfleet.firmware.action_records import (
    ActionRecord,
    due_offers,
    get_action,
    open_actions_of,
    wire_action_id,
)
from posfleet.firmware.action_states import RetryPolicy
from posfleet.firmware.actions import (
    TerminalBusyError,
    cancel_action,
    create_action,
    expire_overdue,
    mark_offered,
)
from posfleet.firmware.artifacts import ArtifactRecord, find_artifact, get_artifact
from posfleet.firmware.cancel_notices import CancelNotices, Notice
from posfleet.firmware.download_tokens import DownloadTokens, download_path
from posfleet.firmware.errors import FirmwareError
from posfleet.firmware.push_checks import PushRefusal, TerminalInventory, check_terminal
from posfleet.store.accounts import record_audit
from posfleet.store.engine import write_transaction
from posfleet.store.terminals import get_terminal

log = logging.getLogger(__name__)

MAX_PUSH_TERMINALS = 1000
"""Most terminals one push names; whole fleets go through rollouts in waves."""
MIN_DEADLINE = timedelta(seconds=5)
MAX_DEADLINE = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class PushRequest:
    """What an operator asks for: this artifact on these terminals, in this window."""

    artifact: str
    """An id, ``name@version`` or a SHA-256 prefix."""
    terminal_ids: Sequence[str]
    window: MaintenanceWindow = field(default_factory=MaintenanceWindow)
    allow_downgrade_confirmed: bool = False
    deadline: timedelta | None = None
    """How long the Actions may take; the policy's default if None."""
    reason: str = ""
    rollout_id: int | None = None
    """The rollout making this push (its Actions name it); None for an operator's push."""

    def __post_init__(self) -> None:
        if not self.terminal_ids:
            raise PushRequestError("name at least one terminal")
        if len(self.terminal_ids) > MAX_PUSH_TERMINALS:
            raise PushRequestError(
                f"{len(self.terminal_ids)} terminals in one push; at most {MAX_PUSH_TERMINALS}"
            )
        if self.deadline is not None and not MIN_DEADLINE <= self.deadline <= MAX_DEADLINE:
            raise PushRequestError(
                f"the deadline must be from {MIN_DEADLINE.total_seconds():.0f} seconds to "
                f"{MAX_DEADLINE.days} days"
            )


class PushRequestError(FirmwareError):
    """A push that cannot be carried out as asked (no terminals, a deadline out of range)."""


@dataclass(frozen=True, slots=True)
class PushResult:
    """What a push did: the Actions created, the terminals refused, the offers sent now."""

    artifact: ArtifactRecord
    created: list[ActionRecord]
    refused: list[PushRefusal]
    offered: int


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    """A cancelled Action and what telling its terminal came to."""

    action: ActionRecord
    notice: Notice


@dataclass(slots=True)
class OfferStats:
    """Counters of the offers published so far."""

    published: int = 0
    publish_failures: int = 0
    reoffered: int = 0
    timed_out: int = 0


class FirmwareOffers:
    """Pushes, cancels and (re-)offers over one database; shared by the API, CLI and sweeper."""

    def __init__(
        self,
        engine: AsyncEngine,
        tokens: DownloadTokens,
        *,
        base_url: str | None,
        publisher: Publisher | None = None,
        policy: RetryPolicy | None = None,
        token_ttl: timedelta = timedelta(days=1),
        publish_timeout_s: float = 10.0,
    ) -> None:
        self.engine = engine
        self.tokens = tokens
        self.base_url = base_url.rstrip("/") if base_url else None
        """Where terminals download from; while None (not bound yet) offers wait."""
        self.publisher = publisher
        self.policy = policy or RetryPolicy()
        self.token_ttl = token_ttl
        self.publish_timeout_s = publish_timeout_s
        self.stats = OfferStats()
        self.notices = CancelNotices(engine, lambda: self.publisher)
        """Tells terminals of cancelled Actions (``firmware_cancel``); the sweeper retries."""
        self.changed = asyncio.Event()
        """Set when Actions are created: the sweeper looks at their deadlines again."""

    async def push(self, request: PushRequest, *, actor: str) -> PushResult:
        """Create one Action per acceptable terminal and offer each (audited).

        Raises :class:`~posfleet.firmware.errors.ArtifactNotFoundError` for an unknown
        artifact; terminals that cannot take the image are listed in ``refused``.
        """
        now = utcnow()
        deadline = now + (request.deadline or self.policy.default_deadline)
        created: list[ActionRecord] = []
        refused: list[PushRefusal] = []
        async with write_transaction(self.engine) as conn:
            artifact = await find_artifact(conn, request.artifact)
            manifest = artifact.signed_manifest.manifest
            for terminal_id in dict.fromkeys(request.terminal_ids):
                refusal = await self._check(conn, terminal_id, manifest, request)
                if refusal is not None:
                    refused.append(refusal)
                    continue
                record = await get_terminal(conn, terminal_id)
                try:
                    created.append(
                        await create_action(
                            conn,
                            artifact_id=artifact.id,
                            terminal_id=terminal_id,
                            window=request.window,
                            deadline=deadline,
                            created_by=actor,
                            now=now,
                            allow_downgrade_confirmed=request.allow_downgrade_confirmed,
                            from_version=record.firmware_version if record else None,
                            rollout_id=request.rollout_id,
                        )
                    )
                except TerminalBusyError as exc:
                    refused.append(PushRefusal(terminal_id, "busy", str(exc)))
            if created:
                await record_audit(
                    conn,
                    actor,
                    "firmware.push",
                    f"artifact:{artifact.label}",
                    {
                        "actions": {a.terminal_id: a.id for a in created},
                        "refused": {r.terminal_id: r.reason for r in refused},
                        "window": request.window.model_dump(mode="json"),
                        "deadline": deadline.isoformat(),
                        "allow_downgrade_confirmed": request.allow_downgrade_confirmed,
                        **({"rollout_id": request.rollout_id} if request.rollout_id else {}),
                    },
                    request.reason,
                )
        offered = await self.publish(created, artifacts={artifact.id: artifact})
        if created:
            # After publishing: woken earlier, the sweeper would publish the same new
            # offers again (harmless to the agent, but twice the messages).
            self.changed.set()
        if offered:
            async with self.engine.connect() as conn:
                created = [await get_action(conn, a.id) or a for a in created]
        return PushResult(artifact, created, refused, offered)

    async def _check(
        self,
        conn: AsyncConnection,
        terminal_id: str,
        manifest: FirmwareManifest,
        request: PushRequest,
    ) -> PushRefusal | None:
        try:
            validate_terminal_id(terminal_id)
        except TopicError:
            return PushRefusal(terminal_id, "invalid_id", f"{terminal_id!r} is not a terminal id")
        record = await get_terminal(conn, terminal_id)
        if record is None:
            return PushRefusal(
                terminal_id, "unknown_terminal", f"the centre has never heard from {terminal_id}"
            )
        facts = TerminalInventory(terminal_id, record.model, record.firmware_version)
        return check_terminal(
            manifest, facts, downgrade_confirmed=request.allow_downgrade_confirmed
        )

    async def cancel(self, action_id: int, *, actor: str, reason: str = "") -> ActionRecord:
        """Cancel an open Action (audited): no more offers, and its token stops working.

        Its terminal is told too (:meth:`cancel_and_tell`), best effort.
        """
        return (await self.cancel_and_tell(action_id, actor=actor, reason=reason)).action

    async def cancel_and_tell(
        self, action_id: int, *, actor: str, reason: str = ""
    ) -> CancelOutcome:
        """Cancel an open Action (audited) and send its terminal ``firmware_cancel``.

        The cancel stands whatever the broker does; the notice says whether the terminal
        was told, and the sweeper tries again if it was not reached.
        """
        cancelled = await cancel_and_audit(self.engine, action_id, actor=actor, reason=reason)
        return CancelOutcome(cancelled, await self.notices.tell(cancelled, actor=actor))

    def offer_for(
        self, action: ActionRecord, artifact: ArtifactRecord, now: datetime
    ) -> FirmwareOffer:
        """The offer for ``action``, with a new token valid until its deadline at most."""
        if self.base_url is None:
            raise FirmwareError("the download service's address is not known yet")
        expires = min(action.deadline, now + self.token_ttl)
        # A due offer starts the next attempt; a re-offer repeats the current one.
        attempt = action.attempts + 1 if action.state.offer_due else max(action.attempts, 1)
        wire_id = wire_action_id(action.id, attempt)
        token = self.tokens.issue(action.terminal_id, wire_id, artifact.sha256, expires)
        return FirmwareOffer(
            action_id=wire_id,
            signed_manifest=artifact.signed_manifest,
            url=f"{self.base_url}{download_path(artifact.sha256)}",
            token=token,
            window=action.window,
            expires_at=action.deadline,
        )

    async def publish(
        self,
        actions: Iterable[ActionRecord],
        *,
        artifacts: dict[int, ArtifactRecord] | None = None,
    ) -> int:
        """Publish an offer for each Action still open; return how many went out."""
        if self.publisher is None or self.base_url is None:
            return 0
        known = dict(artifacts or {})
        sent = 0
        for action in actions:
            now = utcnow()
            if action.state.final or action.deadline <= now:
                continue
            artifact = known.get(action.artifact_id)
            if artifact is None:
                async with self.engine.connect() as conn:
                    artifact = await get_artifact(conn, action.artifact_id)
                if artifact is None:
                    continue
                known[artifact.id] = artifact
            offer = self.offer_for(action, artifact, now)
            try:
                await self.publisher.publish(
                    action.terminal_id, Channel.FW_OFFER, offer, timeout_s=self.publish_timeout_s
                )
            # The publisher is a seam (MQTT, a fake): whatever it raises, the Action stays
            # due and is offered again by the sweeper.
            except Exception as exc:
                self.stats.publish_failures += 1
                log.warning(
                    "offer of action %d to %s not published: %s", action.id, action.terminal_id, exc
                )
                continue
            async with write_transaction(self.engine) as conn:
                await mark_offered(conn, action.id, now=utcnow())
            self.stats.published += 1
            sent += 1
        return sent

    async def publish_due(self) -> int:
        """Publish the offers not yet out: new Actions and retries."""
        async with self.engine.connect() as conn:
            due = await due_offers(conn, now=utcnow())
        return await self.publish(due)

    async def reoffer(self, terminal_ids: Sequence[str]) -> int:
        """Publish the open Actions of terminals that came back online, with new tokens."""
        async with self.engine.connect() as conn:
            open_actions = await open_actions_of(conn, terminal_ids)
        sent = await self.publish(open_actions)
        self.stats.reoffered += sent
        return sent

    async def expire_overdue(self) -> list[ActionRecord]:
        """Time out the open Actions past their deadline now."""
        async with write_transaction(self.engine) as conn:
            expired = await expire_overdue(conn, now=utcnow())
        if expired:
            self.stats.timed_out += len(expired)
            log.info(
                "%d firmware action(s) timed out: %s",
                len(expired),
                ", ".join(f"#{a.id} ({a.terminal_id})" for a in expired[:20]),
            )
        return expired


async def cancel_and_audit(
    engine: AsyncEngine, action_id: int, *, actor: str, reason: str = ""
) -> ActionRecord:
    """Cancel an open Action and record who did it and why, in one transaction.

    Raises :class:`~posfleet.firmware.actions.ActionNotFoundError` or
    :class:`~posfleet.firmware.action_states.ActionTransitionError` (already final).
    """
    async with write_transaction(engine) as conn:
        cancelled = await cancel_action(conn, action_id, actor=actor, now=utcnow(), reason=reason)
        await record_audit(
            conn,
            actor,
            "firmware.cancel",
            f"action:{action_id}",
            {"terminal_id": cancelled.terminal_id, "artifact": cancelled.sha256},
            reason,
        )
    return cancelled
