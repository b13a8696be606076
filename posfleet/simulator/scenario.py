"""Scenario files: what happens to a simulated terminal, and when.

A scenario is TOML, validated with pydantic; a bad file fails with its path and the
reason. Times are seconds since the scenario was installed (``30``, ``"30s"``, ``"5m"``,
``"1h30m"``) on the terminal's own clock, so a test with a fake clock runs a ten-minute
scenario at once. Example::

    name = "a bad afternoon"

    [[events]]
    at = "30s"
    inject = "paper_out"

    [[events]]
    at = "60s"
    clear = "paper_out"

    [[events]]
    at = 0
    ramp_reader_errors = { from = 0.01, to = 0.30, over = "5m" }

    [[events]]
    at = "2m"
    link = { noise = true, byte_delay_ms = 2 }

Each event does exactly one thing: ``inject`` or ``clear`` a fault (see ``FaultName``:
``host_down``, ``tamper``, ``reboot_loop``, ``firmware_boot_loop`` ...), ramp the reader
error rate, change the line (``noise``, ``silent``, ``byte_delay_ms`` for a slow link),
or an ``action``: ``settle``, ``begin_sale``, ``end_sale``. An ``[ecr]`` table sets up a
ZVT terminal's cash-register session: password, receipts, and what each card presented
does (:mod:`posfleet.simulator.zvt_ecr_cards`).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from posfleet.simulator.errors import ScenarioError, SimulatorError
from posfleet.simulator.faults import FaultName
from posfleet.simulator.serial_endpoint import LinkFaults
from posfleet.simulator.terminal_model import SimulatedTerminal
from posfleet.simulator.zvt_ecr_cards import EcrSetup
from posfleet.simulator.zvt_ecr_session import configure_ecr

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(value: Any) -> Any:
    """Seconds from a number or a string like ``"90s"``, ``"5m"``, ``"1h30m"``."""
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        match = _DURATION.match(text)
        if not text or match is None:
            raise ValueError(f"{value!r} is not a duration like 30, '30s', '5m' or '1h30m'")
        hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
        return hours * 3600 + minutes * 60 + seconds
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0, le=30 * 86400)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ReaderRamp(_Strict):
    """The card-read error rate moving from one value to another."""

    start: Annotated[float, Field(alias="from", ge=0, le=1)]
    end: Annotated[float, Field(alias="to", ge=0, le=1)]
    over: Duration


class LinkChange(_Strict):
    """New settings for the serial line; absent ones stay as they are."""

    noise: bool | None = None
    silent: bool | None = None
    byte_delay_ms: Annotated[float, Field(ge=0, le=1000)] | None = None


class ScenarioEvent(_Strict):
    """One thing that happens at ``at``."""

    at: Duration
    inject: FaultName | None = None
    clear: FaultName | None = None
    ramp_reader_errors: ReaderRamp | None = None
    link: LinkChange | None = None
    action: Literal["settle", "begin_sale", "end_sale"] | None = None

    @model_validator(mode="after")
    def _one_thing(self) -> ScenarioEvent:
        given = [
            name
            for name in ("inject", "clear", "ramp_reader_errors", "link", "action")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "an event does exactly one of inject, clear, ramp_reader_errors, link, action"
                f" (this one: {', '.join(given) or 'none'})"
            )
        return self


class TerminalSetup(_Strict):
    """How the simulated terminal is built, where the scenario says."""

    portable: bool = True
    protocol: Literal["maintenance", "zvt"] = "maintenance"
    transactions_per_hour: Annotated[float, Field(ge=0, le=3600)] = 30.0
    reader_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.01
    firmware_version: str = "2.4.1"
    firmware_reader_error_rates: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict
    )
    """By firmware version: the card-read error rate while that version runs (a
    firmware that installs fine but whose reader driver regressed)."""


class Scenario(_Strict):
    """A named timeline of events for one terminal."""

    name: str = "unnamed"
    description: str = ""
    terminal: TerminalSetup = TerminalSetup()
    events: list[ScenarioEvent] = Field(default_factory=list)
    ecr: EcrSetup | None = None
    """A ZVT terminal's cash-register session (see :mod:`posfleet.simulator.zvt_ecr_cards`)."""

    @property
    def duration_s(self) -> float:
        """When the last event happens (a ramp counts until it ends)."""
        ends = [
            e.at + (e.ramp_reader_errors.over if e.ramp_reader_errors else 0) for e in self.events
        ]
        return max(ends, default=0.0)

    def build_terminal(self, serial: str, **overrides: Any) -> SimulatedTerminal:
        """A terminal set up as the scenario says (``overrides`` win), scenario installed."""
        setup = self.terminal.model_dump() | overrides
        terminal = SimulatedTerminal(serial, **setup)
        self.install(terminal)
        return terminal

    def install(self, terminal: SimulatedTerminal, link: LinkFaults | None = None) -> None:
        """Schedule every event on ``terminal``'s clock, counted from now.

        ``link`` is the line the terminal is served on; events that change the line need it.
        """
        if link is None and any(e.link is not None for e in self.events):
            raise SimulatorError(f"scenario {self.name!r} changes the line: pass its LinkFaults")
        if self.ecr is not None:
            configure_ecr(terminal, self.ecr)
        now = terminal.elapsed_s
        for event in self.events:
            terminal.schedule(now + event.at, _action(event, terminal, link))


def _action(event: ScenarioEvent, terminal: SimulatedTerminal, link: LinkFaults | None) -> Any:
    def run() -> None:
        if event.inject is not None:
            terminal.inject(event.inject)
        elif event.clear is not None:
            terminal.clear(event.clear)
        elif event.ramp_reader_errors is not None:
            ramp = event.ramp_reader_errors
            terminal.ramp_reader_errors(ramp.start, ramp.end, ramp.over)
        elif event.link is not None and link is not None:
            change = event.link
            if change.noise is not None:
                link.noise = change.noise
            if change.silent is not None:
                link.silent = change.silent
            if change.byte_delay_ms is not None:
                link.byte_delay_s = change.byte_delay_ms / 1000
        elif event.action == "settle":
            terminal.settle()
        elif event.action == "begin_sale":
            terminal.begin_sale()
        elif event.action == "end_sale":
            terminal.end_sale()

    return run


def _reason(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)


def parse_scenario(text: str, source: str = "<string>") -> Scenario:
    """Parse scenario TOML; raises :class:`ScenarioError` naming ``source`` and the reason."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(source, f"not valid TOML: {exc}") from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, _reason(exc)) from None


def load_scenario(path: Path | str) -> Scenario:
    """Read and validate a scenario file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(path), f"cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ScenarioError(str(path), "is not UTF-8 text") from None
    return parse_scenario(text, str(path))
