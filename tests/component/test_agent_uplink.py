"""The loop-driven MQTT uplink against the real broker: birth, PUBACKs, refusals, commands."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from posfleet.agent.errors import UplinkError
from posfleet.agent.uplink import BrokerEndpoint, MqttUplink, Retained
from posfleet.contract import Channel, topic
from tests.harness import PrivateBroker, async_wait_for


def _uplink(broker: PrivateBroker, terminal_id: str, password: str) -> MqttUplink:
    endpoint = BrokerEndpoint(
        broker.host, broker.port, terminal_id, password, f"agent-{terminal_id}", keepalive_s=5
    )
    return MqttUplink(terminal_id, endpoint, will=b'{"w":1}', offline=b'{"online":false}')


async def test_publishes_resolve_on_puback_and_a_refusal_fails_only_that_message(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    terminal_id = f"UPL-{tmp_path.name[-8:]}"
    creds = broker.provision_terminal(terminal_id)
    probe = broker.probe(broker.central)
    probe.subscribe(f"pos/v1/{terminal_id}/#")
    threads = threading.active_count()
    async with _uplink(broker, terminal_id, creds.password) as uplink:
        assert threading.active_count() <= threads + 1  # at most the connect worker
        uplink.set_retained([Retained(Channel.STATE, b'{"online":true}')])
        await asyncio.wait_for(uplink.wait_connected(), 10)
        await asyncio.wait_for(uplink.publish(Channel.HEALTH, b'{"seq":0}'), 5)
        # A terminal may not publish on its own command topic: the broker says no.
        with pytest.raises(UplinkError, match="refused"):
            await asyncio.wait_for(uplink.publish(Channel.CMD, b"{}"), 5)
        await asyncio.wait_for(uplink.publish(Channel.HEALTH, b'{"seq":1}'), 5)
    await async_wait_for(
        lambda: (
            [m.payload for m in probe.received(topic(terminal_id, Channel.STATE))]
            == [b'{"online":true}', b'{"online":false}']
        ),
        description="birth, then the clean goodbye",
    )
    health = [m.payload for m in probe.received(topic(terminal_id, Channel.HEALTH))]
    assert health == [b'{"seq":0}', b'{"seq":1}']
    probe.close()


async def test_commands_queued_while_offline_arrive_and_unacked_ones_come_again(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    terminal_id = f"UPC-{tmp_path.name[-8:]}"
    creds = broker.provision_terminal(terminal_id)
    centre = broker.probe(broker.central)
    cmd_topic = topic(terminal_id, Channel.CMD)
    async with _uplink(broker, terminal_id, creds.password) as uplink:
        await asyncio.wait_for(uplink.wait_connected(), 10)
    # The agent is away; its persistent session keeps what the centre sends.
    centre.publish(cmd_topic, json.dumps({"n": 1}))
    async with _uplink(broker, terminal_id, creds.password) as uplink:
        first = await asyncio.wait_for(uplink.next_command(), 10)
        assert json.loads(first.payload) == {"n": 1}
        # Not acknowledged (as if the agent died before recording it) ...
    async with _uplink(broker, terminal_id, creds.password) as uplink:
        again = await asyncio.wait_for(uplink.next_command(), 10)
        assert json.loads(again.payload) == {"n": 1}
        again.ack()
    async with _uplink(broker, terminal_id, creds.password) as uplink:
        await asyncio.wait_for(uplink.wait_connected(), 10)
        centre.publish(cmd_topic, json.dumps({"n": 2}))
        latest = await asyncio.wait_for(uplink.next_command(), 10)
        assert json.loads(latest.payload) == {"n": 2}, "the acknowledged one never came back"
        latest.ack()
    centre.close()


async def test_a_wrong_password_is_reported_and_retried_without_stopping(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    terminal_id = f"UPW-{tmp_path.name[-8:]}"
    broker.provision_terminal(terminal_id)
    endpoint = BrokerEndpoint(
        broker.host,
        broker.port,
        terminal_id,
        "wrong",
        f"agent-{terminal_id}",
        reconnect_min_s=0.1,
        reconnect_max_s=0.2,
    )
    async with MqttUplink(terminal_id, endpoint, will=b"{}", offline=b"{}") as uplink:
        await async_wait_for(
            lambda: uplink.last_error is not None and "refused" in uplink.last_error,
            timeout=10,
            description="the refusal reported",
        )
        assert not uplink.is_connected()
