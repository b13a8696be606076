"""What the centre checks before it offers an image to a terminal; pure.

The agent checks the same again on the terminal (it trusts nothing it is sent), but
refusing here means an operator learns at once, in the push's answer, that a terminal
is the wrong model, too old for this image or would be downgraded, instead of reading
a ``rejected`` Action later. Refusal reasons use the agent's words.

Also here: the texts operators type for a push (``22:00-06:00``, ``mon-fri``, ``72h``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from posfleet.contract import FirmwareManifest, MaintenanceWindow
from posfleet.firmware.versions import FirmwareVersion

_COMPARABLE = re.compile(r"^v?[0-9]")
_WINDOW = re.compile(r"^\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class PushRefusal:
    """Why one terminal gets no Action: a stable ``reason`` word and a sentence."""

    terminal_id: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class TerminalInventory:
    """What the registry knows of a terminal that the checks need (None: not reported)."""

    terminal_id: str
    model: str | None
    firmware_version: str | None


def check_terminal(
    manifest: FirmwareManifest, terminal: TerminalInventory, *, downgrade_confirmed: bool
) -> PushRefusal | None:
    """None if ``manifest``'s image may be offered to ``terminal``; otherwise why not."""
    tid = terminal.terminal_id

    def refuse(reason: str, message: str) -> PushRefusal:
        return PushRefusal(tid, reason, message)

    if terminal.model is None or terminal.firmware_version is None:
        return refuse(
            "no_inventory",
            f"{tid} has not reported its inventory (model, firmware) yet; "
            "push once it has been online",
        )
    if terminal.model not in manifest.models:
        built_for = ", ".join(manifest.models) or "no model"
        return refuse(
            "wrong_model",
            f"{tid} is a {terminal.model}; {manifest.name} {manifest.version} is built for "
            f"{built_for}",
        )
    running_text = terminal.firmware_version
    if not _COMPARABLE.match(running_text):
        return refuse(
            "unknown_version",
            f"{tid} runs firmware {running_text!r}, which cannot be compared with "
            f"{manifest.version}",
        )
    running, offered = FirmwareVersion(running_text), FirmwareVersion(manifest.version)
    if offered == running:
        return refuse("same_version", f"{tid} already runs {running_text}")
    if manifest.min_version is not None and running < FirmwareVersion(manifest.min_version):
        return refuse(
            "below_min_version",
            f"{tid} runs {running_text}, older than {manifest.min_version}, the oldest version "
            f"{manifest.version} may update from",
        )
    if offered < running:
        if not manifest.allow_downgrade:
            return refuse(
                "downgrade",
                f"{manifest.version} is older than {running_text} on {tid} and its manifest "
                "does not allow a downgrade",
            )
        if not downgrade_confirmed:
            return refuse(
                "downgrade_unconfirmed",
                f"{manifest.version} is older than {running_text} on {tid}: the manifest allows "
                "a downgrade, confirm it with --allow-downgrade-confirmed",
            )
    return None


def parse_window(text: str, weekdays: str | None = None) -> MaintenanceWindow:
    """``22:00-06:00`` (and ``mon-fri`` or ``0,1,2``) as a window; ValueError saying why."""
    match = _WINDOW.match(text)
    if match is None:
        raise ValueError(f"window {text!r} must read HH:MM-HH:MM, e.g. 22:00-06:00")
    start, end = (part.zfill(5) for part in match.groups())
    days = parse_weekdays(weekdays) if weekdays else list(range(7))
    try:
        return MaintenanceWindow(start=start, end=end, weekdays=days)
    except ValueError:
        raise ValueError(f"window {text!r} has a time that is not on a 24-hour clock") from None


def parse_weekdays(text: str) -> list[int]:
    """``mon-fri``, ``sat,sun`` or ``0,1,2`` (0 is Monday) as sorted weekday numbers."""
    days: set[int] = set()
    for part in filter(None, (p.strip().lower() for p in text.split(","))):
        first, sep, last = part.partition("-")
        lo, hi = _weekday(first), _weekday(last) if sep else _weekday(first)
        days.update(range(lo, hi + 1) if lo <= hi else [*range(lo, 7), *range(hi + 1)])
    if not days:
        raise ValueError("weekdays must name at least one day, e.g. mon-fri")
    return sorted(days)


def _weekday(word: str) -> int:
    if word.isdigit() and int(word) < len(_DAYS):
        return int(word)
    if word[:3] in _DAYS:
        return _DAYS.index(word[:3])
    raise ValueError(f"{word!r} is not a weekday: use mon..sun or 0..6 (0 is Monday)")


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``72h``, ``7d`` (a bare number is seconds); ValueError otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"duration {text!r} must read like 90s, 30m, 72h or 7d")
    number, unit = match.groups()
    return timedelta(seconds=float(number) * _UNIT_SECONDS[unit])
