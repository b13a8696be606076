"""What a simulated terminal's sensors read: its state as contract health and wear counters.

Values are quantised to the precision the maintenance command set carries, so what the
agent reads over the wire equals what these functions return.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from posfleet.agent.drivers.base import TerminalCounters
from posfleet.contract import (
    Battery,
    CardReader,
    HealthMetrics,
    Keys,
    Network,
    NetworkType,
    Printer,
    ReaderCounters,
    Transactions,
)
from posfleet.simulator.faults import FaultName

if TYPE_CHECKING:
    from posfleet.simulator.terminal_model import SimulatedTerminal


def health_reading(t: SimulatedTerminal) -> HealthMetrics:
    """Every health metric of ``t`` as it stands (the caller brought it up to date)."""
    battery = None
    if t.battery is not None:
        battery = Battery(
            percent=round(t.battery, 1),
            charging=t.charging,
            health_percent=round(100 - t.battery_cycles / 20, 1),
            cycles=t.battery_cycles,
        )
    host_up = not t.host_unreachable()
    return HealthMetrics(
        battery=battery,
        temperature_c=round(t.temperature, 1),
        printer=Printer(status=t.printer_status(), lines_printed=t.lines_printed),
        card_reader=CardReader(
            chip=ReaderCounters(**vars(t.readers["chip"])),
            magstripe=ReaderCounters(**vars(t.readers["magstripe"])),
            contactless=ReaderCounters(**vars(t.readers["contactless"])),
            insertions_total=t.insertions,
        ),
        network=Network(
            type=NetworkType.WIFI if t.portable else NetworkType.ETHERNET,
            rssi_dbm=t.rssi,
            host_reachable=host_up,
            tls_failures=t.tls_failures,
            latency_ms=t.latency_ms() if host_up else None,
        ),
        storage_used_pct=round(t.storage, 1),
        memory_used_pct=round(t.memory, 1),
        clock_offset_s=round(t.clock_offset, 3),
        keys=Keys(
            dukpt_remaining=t.dukpt_remaining,
            key_expiry=t.key_expiry,
            key_missing=FaultName.KEY_MISSING in t.active,
        ),
        tamper=FaultName.TAMPER in t.active,
        transactions=Transactions(
            approved=t.approved,
            declined=t.declined,
            failed=t.failed,
            unsettled_batch=t.unsettled,
            in_progress=t.sale_in_progress,
            decline_codes=dict(t.decline_codes),
        ),
        uptime_s=t.uptime_s,
        reboot_reason=t.reboot_reason,
    )


def counters_reading(t: SimulatedTerminal) -> TerminalCounters:
    """Lifetime wear counters of ``t``."""
    return TerminalCounters(
        lines_printed=t.lines_printed,
        paper_rolls_loaded=t.paper_rolls,
        card_insertions=t.insertions,
        magstripe_swipes=t.lifetime["magstripe"].reads,
        contactless_taps=t.lifetime["contactless"].reads,
        card_read_errors=sum(r.errors for r in t.lifetime.values()),
        battery_cycles=t.battery_cycles if t.battery is not None else None,
        reboots=t.reboots,
        transactions=t.transactions_total,
        settlements=t.settlements,
        firmware_updates=t.firmware.updates,
    )
