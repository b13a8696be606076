"""Mask card numbers (PANs) in log text before it leaves the terminal (PCI DSS 3.4).

A candidate is a run of 13 to 19 digits, written plain or in groups joined by single
spaces or dashes (``4111 1111 1111 1111``, ``4111-1111-1111-1111``), that passes the Luhn
check. Each one is masked keeping at most the first six and the last four digits, as
PCI allows, with every separator left where it was so the log's layout is unchanged.

The scrubber errs towards masking: it looks at every span of whole groups inside a
longer run, so a PAN written right after an order number (``order 12345 4111...``) is
still found. A digit run with no separators longer than 19 digits is not a PAN and is
left alone, and so are timestamps and amounts, which never reach 13 digits in a row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MIN_PAN_DIGITS = 13
MAX_PAN_DIGITS = 19
KEEP_FIRST = 6
KEEP_LAST = 4
MASK = "*"

# Digit groups joined by single separators; a run never starts or ends inside a number.
_RUN = re.compile(r"(?<![0-9])[0-9]+(?:[ -][0-9]+)*(?![0-9])")
_GROUP = re.compile(r"[0-9]+")
_DIGITS = frozenset("0123456789")


def luhn_valid(digits: str) -> bool:
    """True if the string of digits passes the Luhn (mod 10) check."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if i % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def looks_like_pan(digits: str) -> bool:
    """True for 13 to 19 digits that pass the Luhn check."""
    return MIN_PAN_DIGITS <= len(digits) <= MAX_PAN_DIGITS and luhn_valid(digits)


@dataclass(frozen=True, slots=True)
class ScrubResult:
    """Scrubbed text and how many card numbers were masked in it."""

    text: str
    masked: int


def scrub(text: str) -> ScrubResult:
    """Return ``text`` with every candidate card number masked."""
    masked = 0
    out: list[str] = []
    last = 0
    for run in _RUN.finditer(text):
        if sum(c in _DIGITS for c in run.group()) < MIN_PAN_DIGITS:
            continue
        scrubbed, count = _scrub_run(run.group())
        if count:
            out.append(text[last : run.start()])
            out.append(scrubbed)
            last = run.end()
            masked += count
    out.append(text[last:])
    return ScrubResult("".join(out), masked)


def scrub_text(text: str) -> str:
    """Return ``text`` with every candidate card number masked."""
    return scrub(text).text


def _scrub_run(run: str) -> tuple[str, int]:
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(run)]
    # Every span of whole groups that reads as a PAN; overlapping spans merge into one
    # region, masked as a whole, so no reading of the digits leaves a PAN exposed.
    regions: list[list[int]] = []
    for first in range(len(groups)):
        last = _longest_pan_from(run, groups, first)
        if last is None:
            continue
        start, end = groups[first][0], groups[last][1]
        if regions and start < regions[-1][1]:
            regions[-1][1] = max(regions[-1][1], end)
        else:
            regions.append([start, end])
    chars = list(run)
    for start, end in regions:
        _mask(chars, start, end)
    return "".join(chars), len(regions)


def _longest_pan_from(run: str, groups: list[tuple[int, int]], first: int) -> int | None:
    """Index of the last group of the longest PAN starting at group ``first``, if any."""
    best = None
    digits = ""
    for last in range(first, len(groups)):
        start, end = groups[last]
        digits += run[start:end]
        if len(digits) > MAX_PAN_DIGITS:
            break
        if looks_like_pan(digits):
            best = last
    return best


def _mask(chars: list[str], start: int, end: int) -> None:
    positions = [i for i in range(start, end) if chars[i] in _DIGITS]
    for i in positions[KEEP_FIRST : len(positions) - KEEP_LAST]:
        chars[i] = MASK
