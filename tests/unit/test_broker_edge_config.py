"""The hardened broker configuration, the per-listener password files, the centre's client
id and the agent's publish guard, without starting anything."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from posfleet.agent.commands.args import CollectLogsArgs
from posfleet.agent.commands.handlers import collect_logs
from posfleet.agent.drivers.base import CollectedLogs, SupportsRemoteActions
from posfleet.agent.publish_guard import PayloadTooLargeError, PublishGuard
from posfleet.agent.uplink import MemoryUplink
from posfleet.broker_bridge.ingest import MAX_PACKET_BYTES
from posfleet.central.broker_auth import BrokerAuthStore
from posfleet.central.mosquitto import TERMINAL_MAX_PACKET_BYTES, MosquittoBroker
from posfleet.central.settings import CentralSettings, SettingsError
from posfleet.contract import MAX_PAYLOAD_BYTES, Channel


def _blocks(config: str) -> dict[str, list[str]]:
    """The global lines (key ``""``) and each listener's lines, by its port."""
    blocks: dict[str, list[str]] = {"": []}
    current = ""
    for line in config.splitlines():
        if line.startswith("listener "):
            current = line.split()[1]
            blocks[current] = []
        elif line and not line.startswith("#"):
            blocks[current].append(line)
    return blocks


def test_terminals_and_the_centre_get_listeners_with_their_own_logins(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path, port=18830, central_port=18831)
    auth = BrokerAuthStore(broker.auth_dir)
    blocks = _blocks(broker.render_config())

    assert "per_listener_settings true" in blocks[""]
    assert f"max_packet_size {TERMINAL_MAX_PACKET_BYTES}" in blocks[""]
    terminals, centre = blocks["18830"], blocks["18831"]
    assert "use_username_as_clientid true" in terminals
    assert f"password_file {auth.terminals_passwd_path}" in terminals
    assert "use_username_as_clientid true" not in centre
    assert f"password_file {auth.services_passwd_path}" in centre
    for block in (terminals, centre):
        assert "allow_anonymous false" in block
        assert f"acl_file {auth.acl_path}" in block
    assert broker.central_url == "mqtt://127.0.0.1:18831"


def test_the_centre_accepts_larger_packets_than_the_broker_takes_from_terminals() -> None:
    # Anything the broker accepted must reach the centre, or it vanishes unseen.
    assert MAX_PAYLOAD_BYTES < TERMINAL_MAX_PACKET_BYTES < MAX_PACKET_BYTES


def test_each_listener_file_holds_only_its_kind_of_login(tmp_path: Path) -> None:
    auth = BrokerAuthStore(tmp_path)
    auth.add_service_user("central")
    auth.add_terminals(["T-1", "T-2"])

    def names(path: Path) -> list[str]:
        return [line.split(":")[0] for line in path.read_text().splitlines()]

    assert names(auth.terminals_passwd_path) == ["T-1", "T-2"]
    assert names(auth.services_passwd_path) == ["central"]
    assert sorted(names(auth.passwd_path)) == ["T-1", "T-2", "central"]
    auth.remove_terminal("T-1")
    assert names(auth.terminals_passwd_path) == ["T-2"]


def test_a_store_from_before_the_split_gets_its_listener_files_on_open(tmp_path: Path) -> None:
    auth = BrokerAuthStore(tmp_path)
    auth.add_service_user("central")
    auth.add_terminal("T-1")
    auth.terminals_passwd_path.unlink()
    auth.services_passwd_path.unlink()

    reopened = BrokerAuthStore(tmp_path)
    assert reopened.terminals_passwd_path.read_text().startswith("T-1:")
    assert reopened.services_passwd_path.read_text().startswith("central:")


def test_the_centres_client_id_is_random_per_var_dir_and_kept(tmp_path: Path) -> None:
    first = CentralSettings(var_dir=tmp_path / "a", client_id="posfleet-central")
    again = CentralSettings(var_dir=tmp_path / "a", client_id="posfleet-central")
    other = CentralSettings(var_dir=tmp_path / "b", client_id="posfleet-central")

    client_id = first.mqtt_client_id()
    prefix, _, suffix = client_id.rpartition("-")
    assert prefix == "posfleet-central" and len(suffix) == 16
    assert again.mqtt_client_id() == client_id  # a restart resumes the session
    assert other.mqtt_client_id() != client_id  # a second instance has its own


def test_a_damaged_client_id_suffix_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "mqtt-client-suffix").write_text("not hex\n")
    with pytest.raises(SettingsError, match="mqtt-client-suffix"):
        CentralSettings(var_dir=tmp_path).mqtt_client_id()


def test_the_guard_refuses_and_counts_only_payloads_above_the_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = PublishGuard("T-1")
    assert guard.check(Channel.CMD_RESULT, b"x" * MAX_PAYLOAD_BYTES) is None
    with caplog.at_level(logging.ERROR):
        error = guard.check(Channel.CMD_RESULT, b"x" * (MAX_PAYLOAD_BYTES + 1))
    assert isinstance(error, PayloadTooLargeError)
    assert guard.refused == 1
    assert f"cmd/result payload of {MAX_PAYLOAD_BYTES + 1} bytes" in caplog.text
    assert "T-1" in caplog.text


async def test_the_memory_uplink_refuses_an_oversized_payload_like_the_real_one() -> None:
    uplink = MemoryUplink()
    with pytest.raises(PayloadTooLargeError):
        await uplink.publish(Channel.EVENT, b"x" * (MAX_PAYLOAD_BYTES + 1))
    await asyncio.wait_for(uplink.publish(Channel.EVENT, b"{}"), 1)
    assert uplink.published == [(Channel.EVENT, b"{}")]
    assert uplink.guard.refused == 1


class _Logs:
    """A driver whose log extract is ``text``, whatever the range."""

    def __init__(self, text: str) -> None:
        self.text = text

    async def collect_logs(self, start: datetime, end: datetime, *, max_bytes: int) -> Any:
        return CollectedLogs(self.text, start, end)


async def test_a_large_log_comes_in_parts_that_each_fit_one_message() -> None:
    # Quotes and control characters double or sextuple in JSON: parts are measured encoded.
    lines = [f'2026-03-01T11:{i % 60:02d}:00Z said "hi" \\ \x01 #{i}\n' for i in range(6000)]
    driver = _Logs("".join(lines))
    end = datetime(2026, 3, 1, 12, tzinfo=UTC)
    parts: list[str] = []
    skip: int | None = 0
    while skip is not None:
        args = CollectLogsArgs.model_validate(
            {"from": (end - timedelta(hours=2)).isoformat(), "to": end.isoformat(), "skip": skip}
        )
        output = await collect_logs(cast(SupportsRemoteActions, driver), args)
        assert len(json.dumps(output, ensure_ascii=False).encode()) < MAX_PAYLOAD_BYTES
        assert output["text"].endswith("\n")
        parts.append(output["text"])
        assert output["truncated"] is (output["next_skip"] is not None)
        skip = output["next_skip"]
    assert len(parts) > 2
    assert "".join(reversed(parts)) == driver.text


async def test_one_line_longer_than_a_part_is_cut_and_the_parts_still_move_on() -> None:
    driver = _Logs("x" * 200_000)
    end = datetime(2026, 3, 1, 12, tzinfo=UTC)
    window = {"from": (end - timedelta(hours=1)).isoformat(), "to": end.isoformat()}
    first = await collect_logs(
        cast(SupportsRemoteActions, driver), CollectLogsArgs.model_validate(window)
    )
    assert first["text"] and first["next_skip"] == len(first["text"])
