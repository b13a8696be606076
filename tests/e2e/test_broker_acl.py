"""The real Mosquitto with the generated passwords and ACL: who may read and write what.

A forbidden message that is silently dropped looks the same as one that is merely late,
so every "did not arrive" below is bounded by a marker: a permitted message sent right
after on the same connection. MQTT keeps one connection's messages in order, so once the
marker is in, the forbidden message would have been too.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from posfleet.central.broker_auth import BrokerCredentials
from posfleet.central.errors import MosquittoNotInstalledError, MosquittoStartError
from posfleet.central.mosquitto import MosquittoBroker
from posfleet.contract import (
    UPLINK_CHANNELS,
    Channel,
    Command,
    all_terminals_filter,
    encode,
    terminal_filter,
    topic,
    uplink_filters,
    utcnow,
)
from tests.harness import (
    BAD_USERNAME_OR_PASSWORD,
    NOT_AUTHORIZED,
    MqttProbe,
    PrivateBroker,
    require_binary,
    wait_for,
)

pytestmark = pytest.mark.e2e

Probe = Callable[[BrokerCredentials], MqttProbe]


def unique_id(label: str) -> str:
    """A terminal id no other test of the session uses."""
    return f"{label}-{uuid.uuid4().hex[:8]}"


def command(name: str = "print_test_page") -> bytes:
    now = utcnow()
    return encode(
        Command(
            id=uuid.uuid4().hex,
            name=name,
            issued_by="support@example.test",
            issued_at=now,
            expires_at=now + timedelta(minutes=5),
        )
    )


@pytest.fixture
def terminal_a(broker: PrivateBroker) -> BrokerCredentials:
    return broker.provision_terminal(unique_id("A"))


@pytest.fixture
def terminal_b(broker: PrivateBroker) -> BrokerCredentials:
    return broker.provision_terminal(unique_id("B"))


def test_terminal_cannot_publish_under_another_terminals_topics(
    mqtt_probe: Probe,
    broker: PrivateBroker,
    terminal_a: BrokerCredentials,
    terminal_b: BrokerCredentials,
) -> None:
    centre = mqtt_probe(broker.central)
    # The session's broker is shared: watch this test's terminals, not others' retained state.
    centre.subscribe(terminal_filter(terminal_a.username))
    centre.subscribe(terminal_filter(terminal_b.username))
    a = mqtt_probe(terminal_a)

    for channel in UPLINK_CHANNELS:
        forged = topic(terminal_b.username, channel)
        assert a.publish(forged, b"forged").value == NOT_AUTHORIZED, forged
    marker = topic(terminal_a.username, Channel.HEALTH)
    assert not a.publish(marker, b"marker").is_failure

    centre.wait_for_messages(1, topic=marker)
    assert [m.topic for m in centre.received()] == [marker]


@pytest.mark.parametrize("filters", ["wildcard", "exact"])
def test_terminal_cannot_read_another_terminals_commands(
    mqtt_probe: Probe,
    broker: PrivateBroker,
    terminal_a: BrokerCredentials,
    terminal_b: BrokerCredentials,
    filters: str,
) -> None:
    a_id, b_id = terminal_a.username, terminal_b.username
    a = mqtt_probe(terminal_a)
    if filters == "wildcard":
        # Mosquitto grants the subscription and filters each delivery through the ACL.
        assert not a.subscribe(all_terminals_filter()).is_failure
    else:
        for name in (topic(b_id, Channel.CMD), topic(b_id, Channel.FW_OFFER)):
            assert not a.subscribe(name).is_failure
        a.subscribe(topic(a_id, Channel.CMD))
    b = mqtt_probe(terminal_b)
    b.subscribe(topic(b_id, Channel.CMD))
    centre = mqtt_probe(broker.central)

    for_b = command("test_card_reader")
    assert not centre.publish(topic(b_id, Channel.CMD), for_b).is_failure
    assert not centre.publish(topic(b_id, Channel.FW_OFFER), b"offer for B").is_failure
    marker = command("collect_logs")
    assert not centre.publish(topic(a_id, Channel.CMD), marker).is_failure

    assert b.wait_for_messages(1)[0].payload == for_b
    received = a.wait_for_messages(1, topic=topic(a_id, Channel.CMD))
    assert [m.payload for m in a.received()] == [marker] == [m.payload for m in received]


def test_terminal_cannot_command_itself(
    mqtt_probe: Probe, broker: PrivateBroker, terminal_a: BrokerCredentials
) -> None:
    a_id = terminal_a.username
    centre = mqtt_probe(broker.central)
    centre.subscribe(terminal_filter(a_id))
    a = mqtt_probe(terminal_a)
    a.subscribe(topic(a_id, Channel.CMD))

    assert a.publish(topic(a_id, Channel.CMD), command("reboot")).value == NOT_AUTHORIZED
    assert a.publish(topic(a_id, Channel.FW_OFFER), b"self-offer").value == NOT_AUTHORIZED
    marker = topic(a_id, Channel.CMD_RESULT)
    assert not a.publish(marker, b"marker").is_failure

    centre.wait_for_messages(1, topic=marker)
    assert [m.topic for m in centre.received()] == [marker]
    assert a.received() == []


def test_wrong_password_unknown_user_and_old_password_are_refused(
    broker: PrivateBroker, terminal_a: BrokerCredentials
) -> None:
    refused = {BAD_USERNAME_OR_PASSWORD, NOT_AUTHORIZED}
    attempts = [
        BrokerCredentials(terminal_a.username, terminal_a.password + "x"),
        BrokerCredentials(unique_id("never-provisioned"), terminal_a.password),
        BrokerCredentials(terminal_a.username, ""),
    ]
    rotated = broker.provision_terminal(terminal_a.username)
    attempts.append(terminal_a)  # the password before rotation
    for credentials in attempts:
        with MqttProbe(broker.host, broker.port, credentials) as probe:
            assert probe.try_connect().value in refused, credentials.username
    assert broker.accepts(rotated)


def test_removed_terminal_is_refused_after_reload(
    broker: PrivateBroker, terminal_a: BrokerCredentials
) -> None:
    assert broker.auth.remove_terminal(terminal_a.username)
    broker.process.reload()
    # The reload is asynchronous: poll until the broker stops accepting the login.
    wait_for(lambda: not broker.accepts(terminal_a), description="the removal to apply")


def test_centre_reads_every_terminal_and_shares_the_load(
    mqtt_probe: Probe,
    broker: PrivateBroker,
    terminal_a: BrokerCredentials,
    terminal_b: BrokerCredentials,
) -> None:
    everything = mqtt_probe(broker.central)
    everything.subscribe(all_terminals_filter())
    shared = mqtt_probe(broker.central)
    for topic_filter in uplink_filters(share_group="central"):
        assert not shared.subscribe(topic_filter).is_failure

    sent = []
    for terminal in (terminal_a, terminal_b):
        probe = mqtt_probe(terminal)
        for channel in UPLINK_CHANNELS:
            name = topic(terminal.username, channel)
            assert not probe.publish(name, name.encode()).is_failure
            sent.append(name)

    mine = {terminal_a.username, terminal_b.username}

    def ours(probe: MqttProbe) -> list[str]:
        return [m.topic for m in probe.received() if m.topic.split("/")[2] in mine]

    everything.wait_until(lambda _: len(ours(everything)) >= len(sent), description="all uplinks")
    shared.wait_until(lambda _: len(ours(shared)) >= len(sent), description="all shared uplinks")
    assert sorted(ours(everything)) == sorted(sent)
    assert sorted(ours(shared)) == sorted(sent)


def test_queued_messages_for_an_offline_centre_survive_a_broker_restart(
    broker: PrivateBroker, terminal_a: BrokerCredentials
) -> None:
    client_id = unique_id("centre-session")
    name = topic(terminal_a.username, Channel.EVENT)
    # Mosquitto 2.0 writes to disk only sessions whose first CONNECT had Clean Start = 0,
    # whatever their expiry: persistent clients must never set it (docs/operations-broker.md).
    with broker.probe(
        broker.central, client_id=client_id, clean_start=False, session_expiry=3600
    ) as centre:
        centre.subscribe(name)
    with broker.probe(terminal_a) as a:
        for n in range(20):
            assert not a.publish(name, f"event {n}".encode()).is_failure

    broker.restart()

    with broker.probe(
        broker.central, client_id=client_id, clean_start=False, session_expiry=3600
    ) as centre:
        received = centre.wait_for_messages(20, timeout=10)
    assert [m.payload for m in received] == [f"event {n}".encode() for n in range(20)]


def test_missing_binary_names_the_debian_package(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path, binary="mosquitto-not-installed")
    with pytest.raises(MosquittoNotInstalledError, match="Debian package 'mosquitto'"):
        broker.start()


def test_start_failure_points_at_the_log(tmp_path: Path) -> None:
    require_binary("mosquitto", "mosquitto")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        broker = MosquittoBroker(tmp_path, port=port, start_timeout=10)
        with pytest.raises(MosquittoStartError) as failure:
            broker.start()
    assert str(broker.log_path) in str(failure.value)
    assert not broker.running


def test_no_broker_is_left_behind_when_the_body_raises(tmp_path: Path) -> None:
    require_binary("mosquitto", "mosquitto")
    pids: list[int | None] = []
    with pytest.raises(RuntimeError), MosquittoBroker(tmp_path) as running:
        pids.append(running.pid)
        raise RuntimeError("boom")
    assert not running.running
    assert pids[0] is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)


def test_outage_keeps_port_and_logins(broker: PrivateBroker, terminal_a: BrokerCredentials) -> None:
    url = broker.url
    broker.stop()
    assert not broker.accepts(terminal_a)
    broker.start()
    assert broker.url == url
    assert broker.accepts(terminal_a)
