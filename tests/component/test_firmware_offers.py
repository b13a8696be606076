"""Pushing firmware: the checks, the offers and their tokens, retries, re-offers on
reconnect and deadlines, with the in-memory publisher over the real store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.downlink import BrokerLogin, MemoryPublisher, MqttPublisher
from posfleet.contract import (
    Channel,
    FirmwareOffer,
    MaintenanceWindow,
    Message,
    State,
    Topic,
    UpdateState,
    UpdateStatus,
    topic,
    utcnow,
)
from posfleet.firmware.action_records import get_action, list_events
from posfleet.firmware.action_states import ActionState, RetryPolicy
from posfleet.firmware.action_sweeper import ActionSweeper
from posfleet.firmware.actions import create_action, record_status
from posfleet.firmware.artifacts import ArtifactRecord
from posfleet.firmware.download_tokens import DownloadTokens
from posfleet.firmware.errors import ArtifactNotFoundError
from posfleet.firmware.offers import FirmwareOffers, PushRequest, PushRequestError
from posfleet.store import write_transaction
from posfleet.store.accounts import list_audit
from tests.component.firmware_rows import add_artifact, add_terminal, signed_manifest
from tests.harness import PrivateBroker, async_wait_for, free_port

TOKENS = DownloadTokens(b"k" * 32)


@pytest.fixture
async def offers(engine: AsyncEngine) -> AsyncIterator[tuple[FirmwareOffers, MemoryPublisher]]:
    publisher = MemoryPublisher()
    yield (
        FirmwareOffers(
            engine,
            TOKENS,
            base_url="https://fleet.example.com/",
            publisher=publisher,
            policy=RetryPolicy(max_attempts=2),
        ),
        publisher,
    )


async def _fleet(engine: AsyncEngine) -> ArtifactRecord:
    await add_terminal(engine, "T-OK", firmware="5.2.1")
    await add_terminal(engine, "T-OTHER-MODEL", model="A920", firmware="5.2.1")
    await add_terminal(engine, "T-TOO-OLD", firmware="4.9.0")
    await add_terminal(engine, "T-NEWER", firmware="5.4.0")
    await add_terminal(engine, "T-SAME", firmware="5.3.0")
    return await add_artifact(engine, signed_manifest("5.3.0", min_version="5.0.0"))


async def test_a_push_offers_the_image_to_fitting_terminals_and_says_why_not_to_others(
    engine: AsyncEngine, offers: tuple[FirmwareOffers, MemoryPublisher]
) -> None:
    service, publisher = offers
    await _fleet(engine)
    window = MaintenanceWindow(start="01:00", end="04:00", weekdays=[0, 1, 2, 3, 4])
    result = await service.push(
        PushRequest(
            "pos-os@5.3.0",
            ["T-OK", "T-OTHER-MODEL", "T-TOO-OLD", "T-NEWER", "T-SAME", "T-GHOST", "no/such"],
            window=window,
            reason="CVE-2026-0042",
        ),
        actor="user:olga",
    )
    assert [a.terminal_id for a in result.created] == ["T-OK"]
    assert result.offered == 1
    reasons = {r.terminal_id: r.reason for r in result.refused}
    assert reasons == {
        "T-OTHER-MODEL": "wrong_model",
        "T-TOO-OLD": "below_min_version",
        "T-NEWER": "downgrade",
        "T-SAME": "same_version",
        "T-GHOST": "unknown_terminal",
        "no/such": "invalid_id",
    }
    messages = {r.terminal_id: r.message for r in result.refused}
    assert "is a A920" in messages["T-OTHER-MODEL"] and "V400m" in messages["T-OTHER-MODEL"]
    assert "older than 5.0.0" in messages["T-TOO-OLD"]

    [offer] = publisher.offers("T-OK")
    action = result.created[0]
    assert offer.action_id == f"{action.id}.1"  # attempt 1
    assert offer.window == window and offer.expires_at == action.deadline
    assert offer.signed_manifest == result.artifact.signed_manifest
    assert offer.url == f"https://fleet.example.com/firmware/download/{result.artifact.sha256}"
    grant = TOKENS.verify(
        offer.token, sha256=result.artifact.sha256, terminal_id="T-OK", now=utcnow()
    )
    assert grant.action_id == offer.action_id

    async with engine.connect() as conn:
        stored = await get_action(conn, action.id)
        audit = await list_audit(conn, limit=5)
    assert stored is not None and stored.state is ActionState.OFFERED and stored.attempts == 1
    assert stored.from_version == "5.2.1"
    entry = next(e for e in audit if e.action == "firmware.push")
    assert entry.actor == "user:olga" and entry.reason == "CVE-2026-0042"
    assert entry.detail["actions"] == {"T-OK": action.id}
    assert entry.detail["refused"]["T-NEWER"] == "downgrade"


async def test_a_downgrade_needs_the_manifest_and_the_operators_confirmation(
    engine: AsyncEngine, offers: tuple[FirmwareOffers, MemoryPublisher]
) -> None:
    service, _ = offers
    await add_terminal(engine, "T-NEWER", firmware="5.4.0")
    await add_artifact(engine, signed_manifest("5.3.0", allow_downgrade=True))
    unconfirmed = await service.push(PushRequest("pos-os@5.3.0", ["T-NEWER"]), actor="user:olga")
    assert [r.reason for r in unconfirmed.refused] == ["downgrade_unconfirmed"]
    assert "--allow-downgrade-confirmed" in unconfirmed.refused[0].message
    confirmed = await service.push(
        PushRequest("pos-os@5.3.0", ["T-NEWER"], allow_downgrade_confirmed=True),
        actor="user:olga",
    )
    assert [a.allow_downgrade_confirmed for a in confirmed.created] == [True]
    again = await service.push(
        PushRequest("pos-os@5.3.0", ["T-NEWER"], allow_downgrade_confirmed=True),
        actor="user:olga",
    )
    assert [r.reason for r in again.refused] == ["busy"]


async def test_bad_pushes_are_refused_before_anything_is_stored(
    engine: AsyncEngine, offers: tuple[FirmwareOffers, MemoryPublisher]
) -> None:
    service, publisher = offers
    with pytest.raises(ArtifactNotFoundError):
        await service.push(PushRequest("pos-os@9.9.9", ["T-OK"]), actor="user:olga")
    with pytest.raises(PushRequestError, match="at least one terminal"):
        PushRequest("pos-os@5.3.0", [])
    with pytest.raises(PushRequestError, match="deadline"):
        PushRequest("pos-os@5.3.0", ["T-OK"], deadline=timedelta(seconds=1))
    assert publisher.sent == []


async def test_offers_not_published_now_go_out_later_and_reconnects_get_a_new_token(
    engine: AsyncEngine, offers: tuple[FirmwareOffers, MemoryPublisher]
) -> None:
    service, publisher = offers
    await _fleet(engine)
    publisher.failing = True
    result = await service.push(PushRequest("pos-os@5.3.0", ["T-OK"]), actor="user:olga")
    assert result.offered == 0 and service.stats.publish_failures == 1
    action = result.created[0]
    async with engine.connect() as conn:
        assert (await get_action(conn, action.id)).state is ActionState.CREATED  # type: ignore[union-attr]

    publisher.failing = False
    async with ActionSweeper(service) as sweeper:
        await async_wait_for(lambda: len(publisher.offers("T-OK")) == 1, timeout=5)
        first = publisher.offers("T-OK")[0]
        # The terminal comes back online: its open Action is offered again.
        birth = State(online=True, agent_version="1.4.0", boot_id="boot-2", ts=utcnow())
        await sweeper.on_stored([Message(Topic("T-OK", Channel.STATE), birth)])
        await async_wait_for(lambda: service.stats.reoffered == 1, timeout=5)
    second = publisher.offers("T-OK")[1]
    assert second.action_id == first.action_id
    TOKENS.verify(second.token, sha256=result.artifact.sha256, terminal_id="T-OK", now=utcnow())
    async with engine.connect() as conn:
        stored = await get_action(conn, action.id)
        history = await list_events(conn, action.id)
    assert stored is not None and stored.state is ActionState.OFFERED and stored.attempts == 1
    assert [e.note for e in history if e.state == "offered"] == [
        "attempt 1",
        "offered again (the terminal reconnected)",
    ]


async def test_a_failed_attempt_is_offered_again_with_a_new_token(
    engine: AsyncEngine, offers: tuple[FirmwareOffers, MemoryPublisher]
) -> None:
    service, publisher = offers
    await _fleet(engine)
    result = await service.push(PushRequest("pos-os@5.3.0", ["T-OK"]), actor="user:olga")
    action = result.created[0]
    failed = UpdateStatus(
        action_id=f"{action.id}.1", state=UpdateState.FAILED, detail="network gave up", ts=utcnow()
    )
    async with write_transaction(engine) as conn:
        await record_status(conn, "T-OK", failed, now=utcnow(), policy=service.policy)
    async with ActionSweeper(service) as sweeper:
        await sweeper.on_stored([Message(Topic("T-OK", Channel.FW_STATUS), failed)])
        await async_wait_for(lambda: service.stats.published == 2, timeout=5)
    first, second = publisher.offers("T-OK")
    assert (first.action_id, second.action_id) == (f"{action.id}.1", f"{action.id}.2")
    # A late status of the first attempt is kept but moves nothing.
    late = failed.model_copy(update={"state": UpdateState.DOWNLOADING, "ts": utcnow()})
    async with write_transaction(engine) as conn:
        outcome = await record_status(conn, "T-OK", late, now=utcnow(), policy=service.policy)
    assert outcome.decision is not None and not outcome.decision.applied
    async with engine.connect() as conn:
        stored = await get_action(conn, action.id)
    assert stored is not None and stored.state is ActionState.OFFERED and stored.attempts == 2


async def test_the_sweeper_times_an_action_out_at_its_deadline(
    engine: AsyncEngine, offers: tuple[FirmwareOffers, MemoryPublisher]
) -> None:
    service, publisher = offers
    artifact = await _fleet(engine)
    async with ActionSweeper(service) as sweeper:
        async with write_transaction(engine) as conn:
            action = await create_action(
                conn,
                artifact_id=artifact.id,
                terminal_id="T-OK",
                window=MaintenanceWindow(),
                deadline=utcnow() + timedelta(seconds=0.5),
                created_by="user:olga",
                now=utcnow(),
            )
        sweeper.wake()

        async def timed_out() -> bool:
            async with engine.connect() as conn:
                found = await get_action(conn, action.id)
            return found is not None and found.state is ActionState.TIMED_OUT

        await async_wait_for(timed_out, timeout=5, description="the action timed out")
    async with engine.connect() as conn:
        done = await get_action(conn, action.id)
    assert done is not None and done.finished_at is not None
    assert done.finished_at >= done.deadline
    assert (done.finished_at - done.deadline) < timedelta(seconds=2)
    assert "never answered" in done.detail
    assert service.stats.timed_out == 1
    assert len(publisher.offers("T-OK")) == 1


async def test_offers_reach_the_terminal_through_the_real_broker_qos1_not_retained(
    engine: AsyncEngine, broker: PrivateBroker
) -> None:
    artifact = await _fleet(engine)
    creds = broker.provision_terminal("T-OK")
    terminal = broker.probe(creds)
    try:
        terminal.subscribe(topic("T-OK", Channel.FW_OFFER))
        login = BrokerLogin(
            *broker.address_for(broker.central), broker.central.username, broker.central.password
        )
        async with MqttPublisher(login) as channel:
            service = FirmwareOffers(engine, TOKENS, base_url="http://c", publisher=channel)
            result = await service.push(PushRequest(artifact.label, ["T-OK"]), actor="user:olga")
            assert result.offered == 1
        [message] = await asyncio.to_thread(
            terminal.wait_for_messages, 1, topic=topic("T-OK", Channel.FW_OFFER)
        )
    finally:
        terminal.close()
    offer = FirmwareOffer.model_validate_json(message.payload)
    assert offer.action_id == f"{result.created[0].id}.1"
    assert message.qos == 1 and not message.retain


async def test_a_publish_without_a_broker_fails_in_time_and_leaves_the_action_due(
    engine: AsyncEngine,
) -> None:
    artifact = await _fleet(engine)
    login = BrokerLogin("127.0.0.1", free_port(), "central", "nobody-listens")
    async with MqttPublisher(login) as channel:
        service = FirmwareOffers(
            engine, TOKENS, base_url="http://c", publisher=channel, publish_timeout_s=0.5
        )
        result = await service.push(PushRequest(artifact.label, ["T-OK"]), actor="user:olga")
    assert result.offered == 0 and service.stats.publish_failures == 1
    async with engine.connect() as conn:
        stored = await get_action(conn, result.created[0].id)
    assert stored is not None and stored.state is ActionState.CREATED
