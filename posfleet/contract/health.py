"""Health report: what a terminal measures about itself every interval.

Counters (reads, errors, lines printed ...) are cumulative since the terminal's
last reboot; the centre computes rates over windows and survives resets. Every
sub-object is optional so that a terminal reports only what its hardware has
(a countertop terminal has no battery; a ZVT terminal says little).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import Field, NonNegativeInt

from posfleet.contract.base import AwareDatetime, Seq, StrictModel
from posfleet.contract.vocabulary import PRINTER_WORKING, NetworkType, PrinterStatus, RebootReason

__all__ = [
    "PRINTER_WORKING",
    "Battery",
    "CardReader",
    "EcrEndOfDay",
    "EcrLink",
    "HealthMetrics",
    "HealthReport",
    "Keys",
    "Network",
    "NetworkType",
    "Percent",
    "Printer",
    "PrinterStatus",
    "ReaderCounters",
    "RebootReason",
    "ResultCodeHex",
    "Transactions",
]

Percent = Annotated[float, Field(ge=0, le=100)]


class Battery(StrictModel):
    """Battery state of a portable terminal."""

    percent: Percent
    charging: bool
    health_percent: Percent | None = None
    cycles: NonNegativeInt | None = Field(
        default=None, description="charge cycles over the battery's life"
    )


class Printer(StrictModel):
    """Receipt printer state and wear."""

    status: PrinterStatus
    lines_printed: NonNegativeInt | None = Field(
        default=None, description="lines printed over the print head's life"
    )


class ReaderCounters(StrictModel):
    """Read attempts and failures of one card interface since the last reboot."""

    reads: NonNegativeInt = 0
    errors: NonNegativeInt = 0


class CardReader(StrictModel):
    """Card reader counters per interface, plus lifetime insertions for wear."""

    chip: ReaderCounters = ReaderCounters()
    magstripe: ReaderCounters = ReaderCounters()
    contactless: ReaderCounters = ReaderCounters()
    insertions_total: NonNegativeInt | None = Field(
        default=None, description="card insertions over the reader's life"
    )


class Network(StrictModel):
    """Connectivity to the acquirer host."""

    type: NetworkType
    rssi_dbm: Annotated[int, Field(ge=-130, le=0)] | None = Field(
        default=None, description="Wi-Fi or cellular signal; None on Ethernet"
    )
    host_reachable: bool
    tls_failures: NonNegativeInt = Field(
        default=0, description="TLS handshake failures since reboot"
    )
    latency_ms: Annotated[float, Field(ge=0)] | None = None


class Keys(StrictModel):
    """Payment key state (never key material)."""

    dukpt_remaining: NonNegativeInt | None = Field(
        default=None, description="DUKPT transaction counter values left on the current key"
    )
    key_expiry: date | None = None
    key_missing: bool = False


class Transactions(StrictModel):
    """Transaction counters since the last settlement or reboot."""

    approved: NonNegativeInt = 0
    declined: NonNegativeInt = 0
    failed: NonNegativeInt = 0
    unsettled_batch: NonNegativeInt = Field(default=0, description="transactions not yet settled")
    in_progress: bool = False
    decline_codes: dict[Annotated[str, Field(pattern=r"^[0-9A-Z]{2}$")], NonNegativeInt] = Field(
        default_factory=dict, description="declines by ISO 8583 response code"
    )


ResultCodeHex = Annotated[str, Field(pattern=r"^[0-9A-F]{2}$")]


class EcrEndOfDay(StrictModel):
    """The totals of the last End of Day the cash register ran, as the terminal reported them."""

    total_cents: NonNegativeInt
    result_code: ResultCodeHex = Field(description="ZVT result code, hex (00 success)")


class EcrLink(StrictModel):
    """What the agent saw pass between the cash register and the terminal (ZVT pass-through).

    Counted since the agent started; amounts and result codes only, never card data.
    """

    transactions: NonNegativeInt = Field(default=0, description="payments that ended")
    approved: NonNegativeInt = 0
    approved_cents: NonNegativeInt = 0
    declined_by_code: dict[ResultCodeHex, NonNegativeInt] = Field(
        default_factory=dict, description="acquirer declines by ZVT result code (01-63)"
    )
    read_errors: NonNegativeInt = Field(
        default=0, description="payments that failed on the card (64 unreadable, 72 chip ...)"
    )
    cancelled: NonNegativeInt = Field(default=0, description="aborted by timeout or key (6C)")
    failed_by_code: dict[ResultCodeHex, NonNegativeInt] = Field(
        default_factory=dict, description="payments that failed on the terminal's side"
    )
    printer_not_ready: NonNegativeInt = Field(
        default=0, description="times the terminal said printer not ready (CC)"
    )
    printer_ready: bool | None = Field(
        default=None, description="the printer state the link last showed; None: not seen"
    )
    transaction_open: bool = False
    end_of_day_runs: NonNegativeInt = 0
    last_end_of_day: EcrEndOfDay | None = None
    own_status_enquiries: NonNegativeInt = Field(
        default=0, description="Status Enquiries the agent sent itself in idle gaps"
    )
    undecodable: NonNegativeInt = Field(
        default=0,
        description="APDUs on the link the agent could not decode (forwarded all the same)",
    )


class HealthMetrics(StrictModel):
    """Every health metric of contract v1; absent means the terminal cannot measure it."""

    battery: Battery | None = None
    temperature_c: Annotated[float, Field(ge=-60, le=150)] | None = None
    printer: Printer | None = None
    card_reader: CardReader | None = None
    network: Network | None = None
    storage_used_pct: Percent | None = None
    memory_used_pct: Percent | None = None
    clock_offset_s: float | None = Field(
        default=None, description="terminal clock minus network time"
    )
    keys: Keys | None = None
    tamper: bool = False
    transactions: Transactions | None = None
    uptime_s: NonNegativeInt | None = None
    reboot_reason: RebootReason | None = None
    ecr: EcrLink | None = Field(
        default=None, description="observed on the cash register's link (ZVT pass-through only)"
    )


class HealthReport(StrictModel):
    """Published on ``health`` every interval."""

    seq: Seq = Field(description="per-terminal sequence number shared with events")
    ts: AwareDatetime
    interval_s: Annotated[int, Field(ge=1, le=86400)] = Field(
        description="the agent's report interval"
    )
    metrics: HealthMetrics
