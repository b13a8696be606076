"""Card numbers never leave the terminal unmasked; other numbers are left as they are."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posfleet.agent.log_scrubber import luhn_valid, scrub, scrub_text


def _with_check_digit(body: str) -> str:
    for digit in "0123456789":
        if luhn_valid(body + digit):
            return body + digit
    raise AssertionError("unreachable: one check digit always fits")


pans = st.integers(min_value=13, max_value=19).flatmap(
    lambda n: st.text("0123456789", min_size=n - 1, max_size=n - 1).map(_with_check_digit)
)


@st.composite
def written_pans(draw: st.DrawFn) -> str:
    """A PAN as a log might write it: plain, or in groups joined by spaces or dashes."""
    pan = draw(pans)
    separator = draw(st.sampled_from(["", " ", "-"]))
    if not separator:
        return pan
    cuts = sorted(draw(st.sets(st.integers(1, len(pan) - 1), max_size=5)))
    groups = [pan[a:b] for a, b in zip([0, *cuts], [*cuts, len(pan)], strict=True)]
    return separator.join(groups)


# Text around a PAN: anything, but the PAN itself starts and ends at a word boundary.
surrounding = st.text(st.characters(codec="utf-8"), max_size=40)
boundary = st.sampled_from([" ", "=", ":", "\n", ",", "card ", "PAN: "])


def _surviving_pans(text: str) -> list[str]:
    """Every 13-19 digit reading (separators ignored) of the text that passes Luhn."""
    found = []
    for run in re.finditer(r"[0-9](?:[ -]?[0-9])*", text):
        digits = re.sub(r"[^0-9]", "", run.group())
        for i in range(len(digits)):
            for n in range(13, 20):
                window = digits[i : i + n]
                if len(window) == n and luhn_valid(window):
                    found.append(window)
    return found


@given(before=surrounding, pan=written_pans(), b1=boundary, b2=boundary, after=surrounding)
def test_no_luhn_valid_pan_survives(before: str, pan: str, b1: str, b2: str, after: str) -> None:
    text = before + b1 + pan + b2 + after
    scrubbed = scrub_text(text)
    assert len(scrubbed) == len(text), "masking keeps the layout"
    start = len(before) + len(b1)
    region = scrubbed[start : start + len(pan)]
    digits = re.sub(r"[^0-9]", "", pan)
    assert len(re.sub(r"[^0-9]", "", region)) <= 10
    assert region.count("*") >= len(digits) - 10


@given(
    before=st.text(st.characters(codec="utf-8", exclude_categories=["Nd"]), max_size=40),
    pans_in_text=st.lists(written_pans(), min_size=1, max_size=4),
    glue=boundary,
)
def test_text_with_card_numbers_has_none_left_after_scrubbing(
    before: str, pans_in_text: list[str], glue: str
) -> None:
    text = before + glue + glue.join(pans_in_text) + glue
    assert _surviving_pans(text)
    assert _surviving_pans(scrub_text(text)) == []


@given(pan=written_pans())
def test_a_pan_keeps_at_most_its_first_six_and_last_four_digits(pan: str) -> None:
    scrubbed = scrub_text(pan)
    shown = re.sub(r"[^0-9]", "", scrubbed)
    digits = re.sub(r"[^0-9]", "", pan)
    assert len(shown) <= 10
    assert shown == digits[:6] + digits[-4:]
    assert _surviving_pans(scrubbed) == []


timestamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
)
amounts = st.decimals(min_value=0, max_value=Decimal("9999999.99"), places=2)


@given(when=timestamps, amount=amounts, batch=st.integers(0, 10**8), rrn=st.integers(0, 10**12))
def test_timestamps_amounts_and_short_ids_are_left_alone(
    when: datetime, amount: Decimal, batch: int, rrn: int
) -> None:
    line = (
        f"{when.isoformat()} {when:%Y-%m-%d %H:%M:%S} approved amount {amount} EUR "
        f"batch {batch:08d} rrn {rrn:012d} ts {int(when.timestamp())}"
    )
    assert scrub(line).text == line
    assert scrub(line).masked == 0


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("card 4111111111111111 ok", "card 411111******1111 ok"),
        ("card 4111 1111 1111 1111 ok", "card 4111 11** **** 1111 ok"),
        ("order 12345 5500-0000-0000-0004 ok", "order 12345 5500-00**-****-0004 ok"),
        ("amex 378282246310005", "amex 378282*****0005"),
        ("not luhn 4111111111111112", "not luhn 4111111111111112"),
        ("too long 41111111111111111111111", "too long 41111111111111111111111"),
    ],
)
def test_known_lines(line: str, expected: str) -> None:
    assert scrub_text(line) == expected
