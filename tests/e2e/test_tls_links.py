"""TLS on every link, against the real Mosquitto and the real aiohttp server.

An agent verifies the broker over ``mqtts://`` and its report is stored by a central
service that is itself connected over TLS; a terminal configured with the wrong CA is
told so by ``posfleet-agent check``; a plain MQTT client gets nowhere on the TLS port;
client certificates are enforced when the broker asks for them; and the dashboard,
served over https with its own certificate, sends HSTS and Secure session cookies.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from posfleet.agent.check import check_broker
from posfleet.agent.runner import broker_endpoint
from posfleet.agent.settings import AgentSettings, load_agent_settings
from posfleet.agent.uplink import MqttUplink
from posfleet.central.tls_material import make_server_cert
from posfleet.contract import Channel, HealthMetrics, HealthReport, encode
from posfleet.simulator import SimulatedTerminal, serve_pty
from posfleet.store.accounts import Role, create_user
from posfleet.store.schema import health_samples
from posfleet.tls_contexts import client_context
from tests.harness import async_wait_for
from tests.harness.central_service import start_central
from tests.harness.tls_broker import TlsBroker, TlsMaterial

PASSWORD = "tls-keeps-the-cookie-safe"


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    broker = TlsBroker(tmp_path_factory.mktemp("tls-broker"))
    broker.start()
    yield broker
    broker.stop()


def _agent_settings(
    broker: TlsBroker, tmp_path: Path, terminal_id: str, **tls: object
) -> AgentSettings:
    return load_agent_settings(
        None,
        terminal_id=terminal_id,
        broker_url=broker.tls_url,
        serial_url="socket://127.0.0.1:9",
        state_dir=tmp_path / "state",
        **tls,
    )


async def test_an_agent_report_over_mqtts_is_stored_by_a_central_service_on_tls(
    tls_broker: TlsBroker, tmp_path: Path, sqlite_url: str
) -> None:
    terminal_id = "TLS-T-0001"
    credentials = tls_broker.provision_terminal(terminal_id)
    settings = _agent_settings(
        tls_broker,
        tmp_path,
        terminal_id,
        password=credentials.password,
        tls_ca_file=tls_broker.tls.ca_cert,
    )
    async with start_central(
        tls_broker,
        tmp_path / "central",
        sqlite_url,
        broker_url=tls_broker.central_tls_url,
        broker_tls_ca_file=tls_broker.tls.ca_cert,
    ) as central:
        assert central.service.ingest.connected
        report = HealthReport(
            seq=41, ts=datetime.now(UTC), interval_s=60, metrics=HealthMetrics(temperature_c=47.5)
        )
        uplink = MqttUplink(
            terminal_id, broker_endpoint(settings), will=b"{}", offline=b'{"online":false}'
        )
        async with uplink:
            await asyncio.wait_for(uplink.wait_connected(), 10)
            await asyncio.wait_for(uplink.publish(Channel.HEALTH, encode(report)), 10)

        async def stored() -> list[int]:
            async with central.service.engine.connect() as conn:
                rows = await conn.scalars(
                    sa.select(health_samples.c.seq).where(
                        health_samples.c.terminal_id == terminal_id
                    )
                )
                return list(rows)

        await async_wait_for(stored, 10, description="the report over TLS to be stored")
        assert await stored() == [41]


async def test_check_with_the_wrong_ca_names_the_ca_the_host_and_the_fix(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    credentials = tls_broker.provision_terminal("TLS-T-0002")
    good = _agent_settings(
        tls_broker,
        tmp_path,
        "TLS-T-0002",
        password=credentials.password,
        tls_ca_file=tls_broker.tls.ca_cert,
    )
    result = await check_broker(good)
    assert result.ok, result.message
    assert "logged in as 'TLS-T-0002'" in result.message

    wrong_ca = tls_broker.tls.unrelated_ca()
    config = tmp_path / "agent.toml"
    async with serve_pty(SimulatedTerminal("SN-TLS-2", seed=3)) as pty:
        config.write_text(
            f'terminal_id = "TLS-T-0002"\n'
            f'broker_url = "{tls_broker.tls_url}"\n'
            f'password = "{credentials.password}"\n'
            f'tls_ca_file = "{wrong_ca}"\n'
            f'serial_url = "{pty}"\n'
            f'state_dir = "{tmp_path / "state"}"\n',
            encoding="utf-8",
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "posfleet.agent.cli",
            "check",
            "--config",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("POSFLEET_AGENT_")},
        )
        out = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
    assert process.returncode == 1, out
    assert "ok    serial" in out
    line = next(line for line in out.splitlines() if line.startswith("FAIL  broker"))
    assert "TLS verification failed" in line
    assert f"the CA in {wrong_ca}" in line
    assert "'127.0.0.1'" in line
    assert "Set tls_ca_file to the CA that signed the broker's certificate" in line
    assert "1 check(s) failed: broker" in out


def test_a_plain_mqtt_client_gets_no_answer_on_the_tls_port(tls_broker: TlsBroker) -> None:
    # MQTT 3.1.1 CONNECT, client id "plain", clean session, keepalive 60.
    connect = bytes([0x10, 17, 0, 4, *b"MQTT", 4, 0x02, 0, 60, 0, 5, *b"plain"])
    with socket.create_connection((tls_broker.host, tls_broker.tls_port), timeout=5) as sock:
        sock.sendall(connect)
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
    assert not received.startswith(b"\x20"), "a CONNACK came back over plain TCP"
    # The same port speaks TLS with the right CA.
    context = client_context(tls_broker.tls.ca_cert)
    address = (tls_broker.host, tls_broker.tls_port)
    with (
        socket.create_connection(address, timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=tls_broker.host) as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


async def test_a_broker_that_requires_client_certificates_admits_only_its_terminals(
    tmp_path: Path,
) -> None:
    broker = TlsBroker(tmp_path / "mtls", require_certificate=True, use_identity_as_username=True)
    broker.start()
    try:
        broker.provision_terminal("TLS-T-0003")
        ca = broker.tls.ca_cert
        cert, key = broker.tls.client_cert("TLS-T-0003")
        no_cert = await check_broker(
            _agent_settings(broker, tmp_path, "TLS-T-0003", tls_ca_file=ca)
        )
        assert not no_cert.ok
        assert "requires a client certificate" in no_cert.message
        assert "set tls_cert_file and tls_key_file" in no_cert.message

        with_cert = _agent_settings(
            broker, tmp_path, "TLS-T-0003", tls_ca_file=ca, tls_cert_file=cert, tls_key_file=key
        )
        result = await check_broker(with_cert)
        assert result.ok, result.message

        stranger = TlsMaterial.create(tmp_path / "stranger")  # a CA the broker does not trust
        cert, key = stranger.client_cert("TLS-T-0003")
        forged = _agent_settings(
            broker, tmp_path, "TLS-T-0003", tls_ca_file=ca, tls_cert_file=cert, tls_key_file=key
        )
        refused = await check_broker(forged)
        assert not refused.ok
        assert "does not accept this terminal's client certificate" in refused.message
    finally:
        broker.stop()


async def test_the_dashboard_over_https_sends_hsts_and_secure_session_cookies(
    tls_broker: TlsBroker, tmp_path: Path, sqlite_url: str
) -> None:
    dashboard_cert, dashboard_key = tmp_path / "dashboard.pem", tmp_path / "dashboard.key"
    make_server_cert(tls_broker.tls.ca, ["127.0.0.1", "localhost"]).write(
        dashboard_cert, dashboard_key
    )
    async with start_central(
        tls_broker,
        tmp_path / "central",
        sqlite_url,
        dashboard_tls_cert=dashboard_cert,
        dashboard_tls_key=dashboard_key,
    ) as central:
        base = central.service.url
        assert base.startswith("https://127.0.0.1:")
        async with central.service.engine.begin() as conn:
            await create_user(conn, "alice", PASSWORD, Role.SUPPORT)
        connector = aiohttp.TCPConnector(ssl=client_context(tls_broker.tls.ca_cert))
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP address host
        async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as browser:
            async with browser.get(f"{base}/login") as form:
                assert form.status == 200
                hsts = form.headers["Strict-Transport-Security"]
                assert re.fullmatch(r"max-age=(\d+); includeSubDomains", hsts)
                assert int(hsts.split("=")[1].split(";")[0]) >= 180 * 24 * 3600
                presession = form.headers["Set-Cookie"]
                token = re.search(r'name="csrf_token" value="([^"]+)"', await form.text())
            assert token is not None
            assert "Secure" in presession and "HttpOnly" in presession
            login = {"csrf_token": token[1], "username": "alice", "password": PASSWORD}
            async with browser.post(f"{base}/login", data=login, allow_redirects=False) as done:
                assert done.status == 303
                assert "Strict-Transport-Security" in done.headers
                cookie = next(
                    h for h in done.headers.getall("Set-Cookie") if h.startswith("pf_session=")
                )
            flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
            assert {"secure", "httponly", "samesite"} <= flags
            assert "SameSite=Strict" in cookie
            async with browser.get(f"{base}/") as page:
                assert page.status == 200
                assert "alice" in await page.text()

        # Plain http to the https port gets no page.
        async with aiohttp.ClientSession() as plain:
            with pytest.raises(aiohttp.ClientError):
                async with plain.get(base.replace("https://", "http://") + "/login") as answer:
                    await answer.read()
