"""ZVT over TCP/IP: the simulator answers unframed APDUs and the agent's driver polls it."""

from __future__ import annotations

import asyncio

import pytest

from posfleet.agent.drivers import ZvtDriver
from posfleet.agent.drivers.zvt_messages import decode_apdu
from posfleet.agent.drivers.zvt_tcp import ZvtTcpLink, parse_zvt_tcp_url
from posfleet.agent.errors import ConfigError
from posfleet.agent.serial import Apdu, FakeLink, success
from posfleet.agent.serial.apdu import ApduStream
from posfleet.agent.settings import load_agent_settings
from posfleet.contract import PrinterStatus
from posfleet.simulator import FaultName, SimulatedTerminal
from posfleet.simulator.serial_endpoint import serve_tcp
from tests.unit.test_zvt_messages import issue_18_completion


def _terminal() -> SimulatedTerminal:
    return SimulatedTerminal("ZVT-52500117", seed=4, protocol="zvt", transactions_per_hour=0)


async def test_the_simulator_answers_an_unframed_status_enquiry_like_a_real_terminal() -> None:
    terminal = _terminal()
    terminal.inject(FaultName.PAPER_OUT)
    async with serve_tcp(terminal, framing="none") as url:
        host, port = parse_zvt_tcp_url(url)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(bytes.fromhex("050103000000"))  # Status Enquiry, no DLE STX, no CRC
        stream = ApduStream()
        received: list[bytes] = []
        async with asyncio.timeout(5):
            while len(received) < 2:
                received += stream.feed(await reader.read(4096))
        writer.write(bytes.fromhex("800000"))
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    assert received[0] == bytes.fromhex("800000")
    completion = decode_apdu(received[1])
    assert completion.name == "completion" and completion.terminal_status == 0xCC
    assert completion.software_version is not None
    assert completion.software_version.startswith("POSFLEET-SIM")


async def test_the_driver_polls_the_simulator_over_tcp() -> None:
    terminal = _terminal()
    async with (
        serve_tcp(terminal, framing="none") as url,
        ZvtTcpLink.from_url(url, ack_timeout=2) as link,
    ):
        driver = ZvtDriver(link, reply_timeout=2, completion_timeout=2)
        identity = await driver.identify()
        assert identity.serial == "52500117"
        assert identity.firmware_version.startswith("POSFLEET-SIM")
        assert await driver.read_faults() == []
        terminal.inject(FaultName.PAPER_OUT)
        health = await driver.read_health()
        assert health.printer is not None and health.printer.status is PrinterStatus.FAULT
        assert [f.code for f in await driver.read_faults()] == ["printer.not_ready"]
        assert link.stats.resends == 0


async def test_printer_not_ready_in_a_real_completion_shows_in_the_health_report() -> None:
    def terminal(req: Apdu) -> Apdu | list[Apdu]:
        if req.is_success:
            return []
        return [success(), Apdu.decode(issue_18_completion(0xCC))]

    driver = ZvtDriver(FakeLink(terminal), diagnosis_interval_s=1e9)
    health = await driver.read_health()
    assert health.printer is not None and health.printer.status is PrinterStatus.FAULT
    [fault] = await driver.read_faults()
    assert fault.code == "printer.not_ready" and fault.zvt_result_code == 0xCC


def test_zvt_over_tcp_needs_the_zvt_driver_and_a_valid_address() -> None:
    base = {"terminal_id": "T1", "broker_url": "mqtt://127.0.0.1:1883"}
    ok = load_agent_settings(None, **base, serial_url="zvt+tcp://10.0.0.5", driver="zvt")
    assert parse_zvt_tcp_url(ok.serial_url) == ("10.0.0.5", 20007)
    with pytest.raises(ConfigError, match="needs driver = 'zvt'"):
        load_agent_settings(None, **base, serial_url="zvt+tcp://10.0.0.5:20007")
    with pytest.raises(ConfigError, match="port must be a number"):
        load_agent_settings(None, **base, serial_url="zvt+tcp://10.0.0.5:x", driver="zvt")


async def test_check_reaches_a_terminal_over_tcp_and_names_a_closed_port() -> None:
    from posfleet.agent.check import check_serial
    from tests.harness import free_port

    base = {"terminal_id": "T1", "broker_url": "mqtt://127.0.0.1:1883", "driver": "zvt"}
    async with serve_tcp(_terminal(), framing="none") as url:
        result = await check_serial(load_agent_settings(None, **base, serial_url=url))
    assert result.ok, result.message
    assert "serial 52500117" in result.message and "TCP/IP" in result.message
    closed = f"zvt+tcp://127.0.0.1:{free_port()}"
    result = await check_serial(load_agent_settings(None, **base, serial_url=closed))
    assert not result.ok
    assert closed in result.message and "ECR interface is set to TCP/IP" in result.message
