"""A cash register written from the ZVT specification runs a day's session on the simulator."""

from __future__ import annotations

import asyncio

import pytest

from posfleet.agent.serial.apdu import Apdu
from posfleet.simulator import SimulatedTerminal, parse_scenario, serve_pty, serve_tcp
from posfleet.simulator.zvt_ecr_cards import CardPresentation, EcrSetup, Outcome
from posfleet.simulator.zvt_ecr_session import ecr_session
from tests.harness.zvt_ecr_client import EcrClient, Exchange, TcpTransport, TtyTransport

SCENARIO = """
name = "three cardholders"

[terminal]
protocol = "zvt"
transactions_per_hour = 0

[ecr]
password = "123456"
cards = [
  { outcome = "approved", card_type = "mastercard" },
  { outcome = "declined", result_code = 0x05 },
  { outcome = "unreadable" },
]
"""

INTERMEDIATE_AND_PRINT = 0x8A  # intermediate status, ECR prints payment receipts by 06 D1


def zvt_terminal() -> SimulatedTerminal:
    return parse_scenario(SCENARIO).build_terminal("ZVT-52500117", seed=1)


def day_of_trading(client: EcrClient) -> dict[str, Exchange]:
    return {
        "registration": client.register("123456", INTERMEDIATE_AND_PRINT),
        "approved": client.pay(1234),
        "declined": client.pay(500),
        "unreadable": client.pay(999),
        "eod": client.end_of_day("123456"),
    }


async def test_registration_three_payments_and_end_of_day_on_a_pty() -> None:
    terminal = zvt_terminal()
    async with serve_pty(terminal) as path:
        client = EcrClient(TtyTransport(path))
        try:
            day = await asyncio.to_thread(day_of_trading, client)
        finally:
            client.close()
    registration = day["registration"]
    assert registration.completed and registration.reply == b"\x80\x00\x00"
    approved, declined, unreadable = day["approved"], day["declined"], day["unreadable"]
    assert approved.completed and approved.result_code == 0x00
    assert approved.amount_cents == 1234
    kinds = [m[:2].hex() for m in approved.messages]
    assert kinds[:3] == ["04ff", "04ff", "040f"] and kinds[-1] == "060f"
    assert "Betrag EUR 12.34" in approved.printed
    assert not declined.completed and declined.result_code == 0x05
    assert unreadable.result_code == 0x64
    eod = day["eod"]
    assert eod.completed and eod.result_code == 0x00
    assert eod.amount_cents == 1234  # only the approved one
    # No card number ever goes over the line, not even in the receipts.
    assert b"4111" not in client.bytes_received()
    assert ecr_session(terminal).payments == [(1234, 0x00), (500, 0x05), (999, 0x64)]


async def test_wrong_password_printer_out_mid_receipt_and_abort_while_waiting() -> None:
    terminal = zvt_terminal()
    session = ecr_session(terminal)
    session.cards.clear()
    session.present(
        CardPresentation(outcome=Outcome.PRINTER_NOT_READY, lines_before_failure=2),
        CardPresentation(outcome=Outcome.NO_CARD),
    )

    def run(client: EcrClient) -> tuple[Exchange, ...]:
        refused = client.register("000000", INTERMEDIATE_AND_PRINT)
        client.register("123456", INTERMEDIATE_AND_PRINT)
        printer = client.pay(2000)
        waiting = client.start_payment(300)
        aborted = client.abort()
        return refused, printer, waiting, aborted

    async with serve_pty(terminal) as path:
        client = EcrClient(TtyTransport(path))
        try:
            refused, printer, waiting, aborted = await asyncio.to_thread(run, client)
        finally:
            client.close()
    assert refused.reply[:1] == b"\x84"
    assert printer.result_code == 0xCC and len(printer.printed) == 2
    assert waiting.messages[-1] == b"\x04\xff\x01\x0a"  # insert card
    assert aborted.messages == [b"\x06\x1e\x01\x6c"]
    assert session.waiting_for_card is None and not terminal.sale_in_progress


@pytest.mark.parametrize("fmt", ["lines", "text_block"])
def test_receipts_only_when_the_ecr_asked_for_them(fmt: str) -> None:
    terminal = SimulatedTerminal("ZVT-1", protocol="zvt", transactions_per_hour=0)
    session = ecr_session(terminal)
    session.configure(EcrSetup(receipt_format=fmt))
    pay = Apdu(0x06, 0x01, bytes.fromhex("04000000001000"))
    silent = session.handle(Apdu(0x06, 0x00, bytes.fromhex("00000000")))
    assert silent is not None
    kinds = [f"{m.cls:02x}{m.ins:02x}" for m in session.handle(pay) or []]
    assert kinds == ["8000", "040f", "060f"]  # terminal prints itself, no status updates
    session.handle(Apdu(0x06, 0x00, bytes.fromhex("00000082")))
    kinds = [f"{m.cls:02x}{m.ins:02x}" for m in session.handle(pay) or []]
    printed = [k for k in kinds if k in ("06d1", "06d3")]
    assert printed == (["06d1"] * 7 if fmt == "lines" else ["06d3"])


async def test_the_same_day_over_tcp_with_unframed_apdus() -> None:
    terminal = zvt_terminal()
    async with serve_tcp(terminal, framing="none") as url:
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        client = EcrClient(TcpTransport(host, int(port)), "tcp")
        try:
            day = await asyncio.to_thread(day_of_trading, client)
        finally:
            client.close()
    assert [day[k].result_code for k in ("approved", "declined", "unreadable")] == [0, 5, 0x64]
    assert day["registration"].completed and day["eod"].amount_cents == 1234
    # Unframed: no DLE STX anywhere, the acknowledgements are 80 00 00 APDUs.
    assert not client.bytes_sent().startswith(b"\x10\x02")
    assert client.bytes_sent().count(b"\x80\x00\x00") >= 10
