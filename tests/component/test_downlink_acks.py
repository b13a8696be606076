"""The centre's publisher under load: many publishes awaiting their PUBACKs at once.

A lock held around paho's ``publish`` while paho's thread, holding its own message lock,
delivered a PUBACK to the callback that wanted the same lock, froze the whole central
service (a rollout's offers hung a test run). Thousands of publishes in flight make that
interleaving near certain; every one must be acknowledged.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from posfleet.broker_bridge.downlink import BrokerLogin, MqttPublisher
from posfleet.contract import Channel, Command, utcnow
from tests.harness import PrivateBroker


async def test_thousands_of_concurrent_publishes_are_all_acknowledged(
    broker: PrivateBroker,
) -> None:
    login = BrokerLogin(
        *broker.address_for(broker.central), broker.central.username, broker.central.password,
        client_id=f"acks-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    async with MqttPublisher(login) as channel:
        await channel.wait_ready(10)
        now = utcnow()
        command = Command(
            id="acks-self-test", name="self_test", args={}, issued_by="test:acks", issued_at=now,
            expires_at=now + timedelta(seconds=1),  # no terminal is there to run it
        )  # fmt: skip
        async with asyncio.timeout(60):
            await asyncio.gather(
                *(
                    channel.publish(f"ACK-{n % 50:02d}", Channel.CMD, command, timeout_s=50)
                    for n in range(3000)
                )
            )
