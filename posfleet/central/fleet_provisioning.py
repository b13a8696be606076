"""Provision broker credentials for a batch of (simulated) terminals at once."""

from __future__ import annotations

from pathlib import Path

from posfleet.central.broker_auth import BrokerAuthStore
from posfleet.simulator.fleet_file import FleetFile, FleetTerminal, write_fleet_file

DEMO_SITES = ("berlin-mitte", "hamburg-hafen", "munich-ost", "cologne-dom", "vienna-1")
DEMO_TIMEZONES = (
    "Europe/Berlin",
    "Europe/Berlin",
    "Europe/Berlin",
    "Europe/Berlin",
    "Europe/Vienna",
)


def provision_fleet(auth_dir: Path, count: int, prefix: str, broker_url: str, out: Path) -> Path:
    """Create broker credentials for ``count`` terminals and write them to a fleet file.

    Terminals are spread over a few sites and merchants so the dashboard has something
    to group by. Returns the fleet file's path.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    ids = [f"{prefix}-{i:05d}" for i in range(1, count + 1)]
    credentials = BrokerAuthStore(auth_dir).add_terminals(ids)
    terminals = []
    for i, creds in enumerate(credentials, start=1):
        site = i % len(DEMO_SITES)
        terminals.append(
            FleetTerminal(
                terminal_id=creds.username,
                password=creds.password,
                merchant_id=f"M{1000 + site:04d}",
                site_id=DEMO_SITES[site],
                timezone=DEMO_TIMEZONES[site],
                seed=i,
            )
        )
    return write_fleet_file(out, FleetFile(broker_url=broker_url, terminals=terminals))
