"""What the simulated cardholders do at the terminal, and how a scenario file says so.

A scenario's ``[ecr]`` table sets the terminal's ZVT password, how it prints receipts and
a queue of card presentations, one per Authorization (``06 01``) the cash register sends::

    [ecr]
    password = "123456"
    receipt_format = "lines"          # 06 D1 per line, or "text_block" for one 06 D3
    repeat_cards = false              # start the queue again when it runs out
    cards = [
      { outcome = "approved", card_type = "girocard" },
      { outcome = "declined", result_code = 0x05 },
      { outcome = "unreadable" },
      { outcome = "printer_not_ready", lines_before_failure = 2 },
      { outcome = "no_card" },        # nobody presents a card: the ECR must abort
    ]

When the queue is empty every further payment is approved with a girocard.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Outcome(StrEnum):
    """How one payment ends."""

    APPROVED = "approved"
    DECLINED = "declined"
    """The acquirer refuses: Status Information with the result code, then Abort."""
    UNREADABLE = "unreadable"
    """The card cannot be read: Abort ``06 1E 64``."""
    PRINTER_NOT_READY = "printer_not_ready"
    """Approved, then the receipt stops after a few lines: Abort ``06 1E CC``."""
    NO_CARD = "no_card"
    """Nobody presents a card: the terminal waits until the ECR sends Abort ``06 B0``."""


CARD_TYPES: dict[str, tuple[int, str]] = {
    "girocard": (0x05, "girocard"),
    "mastercard": (0x06, "Mastercard"),
    "amex": (0x08, "American Express"),
    "visa": (0x0A, "VISA"),
    "maestro": (0x2E, "Maestro"),
}
"""ZVT card-type id (BMP ``8A``) and the name on the receipt (BMP ``8B``)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CardPresentation(_Strict):
    """One cardholder at the terminal."""

    outcome: Outcome = Outcome.APPROVED
    card_type: Literal["girocard", "mastercard", "amex", "visa", "maestro"] = "girocard"
    result_code: Annotated[int, Field(ge=0x01, le=0x63)] = 0x05
    """For ``declined``: the acquirer's code (ISO 8583 style, ``05`` do not honour)."""
    lines_before_failure: Annotated[int, Field(ge=0, le=20)] = 2
    """For ``printer_not_ready``: receipt lines that still come out."""


class EcrSetup(_Strict):
    """The ``[ecr]`` table of a scenario file."""

    password: str = "000000"
    receipt_format: Literal["lines", "text_block"] = "lines"
    repeat_cards: bool = False
    cards: list[CardPresentation] = Field(default_factory=list)

    @field_validator("password")
    @classmethod
    def _six_digits(cls, value: str) -> str:
        if len(value) != 6 or not value.isdigit():
            raise ValueError("the ZVT password is six digits (3 bytes BCD), e.g. '000000'")
        return value
