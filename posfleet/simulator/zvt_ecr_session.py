"""Sans-IO: the simulated terminal's side of a cash-register (ECR) session over ZVT.

Registration ``06 00``, Authorization ``06 01``, End of Day ``06 50`` and Abort ``06 B0``
each become the conversation the terminal holds with the ECR: the acknowledgement
``80 00 00`` first, then the messages the terminal sends while it holds the master rights
(each answered ``80 00 00`` by the ECR; the serial endpoint sends the next one then):

- Intermediate Status ``04 FF`` ("insert card", "please wait", "card not readable") if the
  ECR asked for it in the registration's config byte (``0x08``);
- Status Information ``04 0F``: result code (BMP ``27``), amount (``04``), trace (``0B``),
  time and date, terminal id (``29``), authorisation code (``3B``), receipt number
  (``87``), card type (``8A``) and card name (``8B``); never a card number;
- the receipt as Print Line ``06 D1`` messages (or one Print Text-Block ``06 D3``) if the
  ECR asked to print it (config bits ``0x80`` and ``0x02``, ``0x04`` for End of Day);
- Completion ``06 0F``, or Abort ``06 1E <result code>`` when the payment failed.

What each payment does comes from the terminal's queue of card presentations
(:mod:`posfleet.simulator.zvt_ecr_cards`, the ``[ecr]`` table of a scenario file) and from
its injected faults: host down ``A3``, reader defective ``E2``, a printer fault ``CC``
mid-receipt when the terminal prints itself.
"""

from __future__ import annotations

import time
import weakref
from collections import Counter, deque
from dataclasses import dataclass, field

from posfleet.agent.serial.apdu import Apdu, failure, success
from posfleet.simulator.faults import FaultName
from posfleet.simulator.terminal_model import SimulatedTerminal
from posfleet.simulator.zvt_ecr_cards import CARD_TYPES, CardPresentation, EcrSetup, Outcome

REGISTRATION = 0x0600
AUTHORIZATION = 0x0601
END_OF_DAY = 0x0650
ECR_ABORT = 0x06B0
ECR_COMMANDS = frozenset({REGISTRATION, AUTHORIZATION, END_OF_DAY, ECR_ABORT})

FUNCTION_NOT_POSSIBLE = 0x83
PROTOCOL_ERROR = 0x9A
CARD_UNREADABLE = 0x64
ABORTED = 0x6C
HOST_UNREACHABLE = 0xA3
READER_DEFECTIVE = 0xE2
PRINTER_NOT_READY = 0xCC

CONFIG_ECR_PRINTS_PAYMENT = 0x02
CONFIG_ECR_PRINTS_ADMIN = 0x04
CONFIG_INTERMEDIATE_STATUS = 0x08
CONFIG_PRINT_VIA_ECR = 0x80

INSERT_CARD = 0x0A
CARD_NOT_READABLE = 0x0C
PLEASE_WAIT = 0x0E

_TOTALS_ORDER = ("girocard", "maestro", "mastercard", "amex", "visa")
"""Card types in BMP ``60`` (individual totals), each as count + turnover."""


def _msg(cls: int, ins: int, data: bytes = b"") -> Apdu:
    return Apdu(cls, ins, data)


def _bcd(value: int, size: int) -> bytes:
    return bytes.fromhex(f"{value:0{size * 2}d}"[-size * 2 :])


def _llvar(data: bytes, digits: int) -> bytes:
    return bytes(0xF0 | int(d) for d in f"{len(data):0{digits}d}") + data


def _ber_length(size: int) -> bytes:
    if size < 0x80:
        return bytes((size,))
    if size <= 0xFF:
        return bytes((0x81, size))
    return bytes((0x82, size >> 8, size & 0xFF))


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + _ber_length(len(value)) + value


def parse_amount(data: bytes) -> int | None:
    """The amount in cents from an Authorization's BMP ``04`` (6 bytes BCD), if present.

    The amount is the first BMP of an Authorization in practice; anything else before it
    is not looked into (its length would have to be known).
    """
    if len(data) >= 7 and data[0] == 0x04:
        digits = data[1:7].hex()
        if digits.isdigit():
            return int(digits)
    return None


@dataclass
class EcrTotals:
    """Approved payments since the last End of Day, by card type."""

    count: Counter[str] = field(default_factory=Counter)
    cents: Counter[str] = field(default_factory=Counter)
    first_receipt: int | None = None
    last_receipt: int | None = None

    @property
    def total_cents(self) -> int:
        """Sum of every approved amount."""
        return sum(self.cents.values())

    @property
    def total_count(self) -> int:
        """Number of approved payments."""
        return sum(self.count.values())


class EcrSession:
    """The ECR-facing application of one simulated terminal (one per terminal)."""

    def __init__(self, terminal: SimulatedTerminal, setup: EcrSetup | None = None) -> None:
        self.terminal = terminal
        self.setup = setup or EcrSetup()
        self.cards: deque[CardPresentation] = deque(self.setup.cards)
        self.registered = False
        self.config_byte = 0x00
        self.currency: bytes | None = None
        self.trace = 0
        self.receipt = 0
        self.totals = EcrTotals()
        self.waiting_for_card: int | None = None
        """The amount of a payment waiting for a card that never comes (``no_card``)."""
        self.payments: list[tuple[int, int]] = []
        """(amount in cents, result code) of every Authorization, in order."""
        self.end_of_day_runs = 0

    def configure(self, setup: EcrSetup) -> None:
        """Use ``setup`` from now on (a scenario's ``[ecr]`` table): new password, new queue."""
        self.setup = setup
        self.cards = deque(setup.cards)

    def present(self, *cards: CardPresentation) -> None:
        """Queue card presentations for the next Authorizations."""
        self.cards.extend(cards)

    def handle(self, req: Apdu) -> list[Apdu] | None:
        """The conversation for an ECR command, or None if ``req`` is not one of them."""
        kind = req.cls << 8 | req.ins
        if self.waiting_for_card is not None and not req.is_success:
            if kind == ECR_ABORT:
                return self._abort_waiting()
            return [failure(FUNCTION_NOT_POSSIBLE)]  # busy with the payment
        if kind == REGISTRATION:
            return self._registration(req.data)
        if kind == AUTHORIZATION:
            return self._authorization(req.data)
        if kind == END_OF_DAY:
            return self._end_of_day(req.data)
        if kind == ECR_ABORT:
            return [failure(FUNCTION_NOT_POSSIBLE)]  # nothing to abort
        return None

    # --- commands -------------------------------------------------------------------

    def _password_ok(self, data: bytes) -> bool:
        return len(data) >= 3 and data[:3].hex() == self.setup.password

    def _registration(self, data: bytes) -> list[Apdu]:
        if len(data) < 4:
            return [failure(PROTOCOL_ERROR)]
        if not self._password_ok(data):
            return [failure(FUNCTION_NOT_POSSIBLE)]
        self.registered = True
        self.config_byte = data[3]
        # The currency is echoed only if the ECR sent one (2 bytes BCD after the config byte).
        self.currency = data[4:6] if len(data) >= 6 and data[4] != 0x03 else None
        completion = bytes((0x19, 0x00, 0x29)) + self._tid()
        if self.currency is not None:
            completion += b"\x49" + self.currency
        self.terminal.log(f"ECR registered, config byte {self.config_byte:02x}")
        return [success(), _msg(0x06, 0x0F, completion)]

    def _authorization(self, data: bytes) -> list[Apdu]:
        amount = parse_amount(data)
        if amount is None:
            return [failure(PROTOCOL_ERROR)]
        card = self._next_card()
        out = [success()]
        out += self._intermediate(INSERT_CARD)
        if card.outcome is Outcome.NO_CARD:
            self.waiting_for_card = amount
            self.terminal.begin_sale()
            return out
        self.terminal.begin_sale()
        try:
            return out + self._pay(amount, card)
        finally:
            self.terminal.end_sale()

    def _pay(self, amount: int, card: CardPresentation) -> list[Apdu]:
        t = self.terminal
        if FaultName.READER_DEFECTIVE in t.active:
            return self._failed(amount, READER_DEFECTIVE)
        if card.outcome is Outcome.UNREADABLE:
            return [*self._intermediate(CARD_NOT_READABLE), *self._failed(amount, CARD_UNREADABLE)]
        out = self._intermediate(PLEASE_WAIT)
        if t.host_unreachable():
            return out + self._failed(amount, HOST_UNREACHABLE)
        self.trace += 1
        self.receipt += 1
        code = card.result_code if card.outcome is Outcome.DECLINED else 0x00
        out.append(self._status_information(amount, code, card))
        lines = self._receipt_lines(amount, code, card)
        if card.outcome is Outcome.PRINTER_NOT_READY:
            out += self._print(lines[: card.lines_before_failure], CONFIG_ECR_PRINTS_PAYMENT)
            t.log(f"receipt {self.receipt}: printer not ready after {card.lines_before_failure}")
            return out + self._failed(amount, PRINTER_NOT_READY)
        if not self._ecr_prints(CONFIG_ECR_PRINTS_PAYMENT):
            for number, line in enumerate(lines):
                if not t.print_line(line):
                    # The terminal's own printer gave out: the payment is reversed.
                    t.log(f"receipt {self.receipt}: printer not ready at line {number}")
                    return out + self._failed(amount, PRINTER_NOT_READY)
        else:
            out += self._print(lines, CONFIG_ECR_PRINTS_PAYMENT)
        if code != 0x00:
            return out + self._failed(amount, code)
        self._book(amount, card)
        return [*out, _msg(0x06, 0x0F)]

    def _abort_waiting(self) -> list[Apdu]:
        amount, self.waiting_for_card = self.waiting_for_card or 0, None
        self.terminal.end_sale()
        return [success(), *self._failed(amount, ABORTED)]

    def _end_of_day(self, data: bytes) -> list[Apdu]:
        if not self._password_ok(data):
            return [failure(FUNCTION_NOT_POSSIBLE)]
        totals, self.totals = self.totals, EcrTotals()
        self.end_of_day_runs += 1
        out = [success(), *self._intermediate(PLEASE_WAIT)]
        if self.terminal.host_unreachable():
            self.totals = totals  # nothing was settled
            return [*out, _msg(0x06, 0x1E, bytes((HOST_UNREACHABLE,)))]
        self.terminal.settle()
        self.receipt += 1
        fields = bytearray((0x27, 0x00, 0x04)) + _bcd(totals.total_cents, 6)
        fields += self._now_fields()
        fields += b"\x87" + _bcd(self.receipt, 2)
        individual = _bcd(totals.first_receipt or 0, 2) + _bcd(totals.last_receipt or 0, 2)
        for name in _TOTALS_ORDER:
            individual += bytes((min(255, totals.count[name]),)) + _bcd(totals.cents[name], 6)
        fields += b"\x60" + _llvar(individual, 3)
        out.append(_msg(0x04, 0x0F, bytes(fields)))
        lines = [
            "posfleet simulator",
            "KASSENSCHNITT / END OF DAY",
            f"Terminal {self._tid().hex()}",
            f"Belege {totals.first_receipt or 0:04d}-{totals.last_receipt or 0:04d}",
            f"Anzahl {totals.total_count}",
            f"Summe EUR {totals.total_cents / 100:.2f}",
        ]
        out += self._print(lines, CONFIG_ECR_PRINTS_ADMIN)
        self.terminal.log(f"end of day: {totals.total_count} payments, {totals.total_cents} ct")
        return [*out, _msg(0x06, 0x0F)]

    # --- pieces ---------------------------------------------------------------------

    def _next_card(self) -> CardPresentation:
        if not self.cards:
            return CardPresentation()
        card = self.cards.popleft()
        if self.setup.repeat_cards:
            self.cards.append(card)
        return card

    def _tid(self) -> bytes:
        digits = "".join(c for c in self.terminal.identity.serial if c.isdigit())
        return bytes.fromhex(digits[-8:].rjust(8, "0"))

    def _intermediate(self, status: int) -> list[Apdu]:
        if not self.config_byte & CONFIG_INTERMEDIATE_STATUS:
            return []
        return [_msg(0x04, 0xFF, bytes((status,)))]

    def _ecr_prints(self, which: int) -> bool:
        wanted = which | CONFIG_PRINT_VIA_ECR
        return self.config_byte & wanted == wanted

    def _failed(self, amount: int, code: int) -> list[Apdu]:
        self.payments.append((amount, code))
        return [_msg(0x06, 0x1E, bytes((code,)))]

    def _book(self, amount: int, card: CardPresentation) -> None:
        self.payments.append((amount, 0x00))
        self.totals.count[card.card_type] += 1
        self.totals.cents[card.card_type] += amount
        if self.totals.first_receipt is None:
            self.totals.first_receipt = self.receipt
        self.totals.last_receipt = self.receipt

    def _now_fields(self) -> bytes:
        now = time.localtime(self.terminal.wall_time())
        return (
            b"\x0c"
            + bytes.fromhex(time.strftime("%H%M%S", now))
            + b"\x0d"
            + bytes.fromhex(time.strftime("%m%d", now))
        )

    def _status_information(self, amount: int, code: int, card: CardPresentation) -> Apdu:
        type_id, name = CARD_TYPES[card.card_type]
        fields = bytearray((0x27, code, 0x04)) + _bcd(amount, 6)
        fields += b"\x0b" + _bcd(self.trace, 3)
        fields += self._now_fields()
        fields += b"\x29" + self._tid()
        if code == 0x00:
            fields += b"\x3b" + f"{self.trace:08d}".encode("ascii")  # authorisation code
        fields += b"\x87" + _bcd(self.receipt, 2)
        fields += bytes((0x8A, type_id))
        fields += b"\x8b" + _llvar(name.encode("ascii"), 2)
        return _msg(0x04, 0x0F, bytes(fields))

    def _receipt_lines(self, amount: int, code: int, card: CardPresentation) -> list[str]:
        _, name = CARD_TYPES[card.card_type]
        verdict = "Zahlung erfolgt" if code == 0x00 else f"Abgelehnt ({code:02X})"
        return [
            "posfleet simulator",
            "KARTENZAHLUNG",
            f"Terminal {self._tid().hex()}",
            f"Beleg {self.receipt:04d}  Trace {self.trace:06d}",
            f"Karte {name}",  # the card number is never printed here, not even masked
            f"Betrag EUR {amount / 100:.2f}",
            verdict,
        ]

    def _print(self, lines: list[str], which: int) -> list[Apdu]:
        if not self._ecr_prints(which):
            return []
        if self.setup.receipt_format == "text_block":
            texts = b"".join(_tlv(0x07, line.encode("latin-1", "replace")) for line in lines)
            return [_msg(0x06, 0xD3, _tlv(0x06, _tlv(0x25, texts)))]
        return [_msg(0x06, 0xD1, b"\x00" + line.encode("latin-1", "replace")) for line in lines]


_SESSIONS: weakref.WeakKeyDictionary[SimulatedTerminal, EcrSession] = weakref.WeakKeyDictionary()


def ecr_session(terminal: SimulatedTerminal) -> EcrSession:
    """The ECR session of ``terminal`` (made on first use; one per terminal)."""
    session = _SESSIONS.get(terminal)
    if session is None:
        session = _SESSIONS[terminal] = EcrSession(terminal)
    return session


def configure_ecr(terminal: SimulatedTerminal, setup: EcrSetup) -> EcrSession:
    """Apply a scenario's ``[ecr]`` table to ``terminal``'s session."""
    session = ecr_session(terminal)
    session.configure(setup)
    return session


def ecr_reply(terminal: SimulatedTerminal, req: Apdu) -> list[Apdu] | None:
    """The ZVT responder's hook: the conversation for an ECR command, else None."""
    return ecr_session(terminal).handle(req)
