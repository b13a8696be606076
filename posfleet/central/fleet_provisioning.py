"""Provision broker credentials for a batch of (simulated) terminals at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection

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
DEMO_SITE_NAMES = (
    "Berlin Mitte, Rosenthaler Str.",
    "Hamburg Hafen, Landungsbrücken",
    "München Ost, Orleansplatz",
    "Köln Dom, Hohe Straße",
    "Wien 1, Kärntner Straße",
)


@dataclass(frozen=True, slots=True)
class DemoMerchant:
    """A merchant of the simulated fleet, with the contact support staff call."""

    merchant_id: str
    name: str
    contact_name: str
    contact_phone: str
    city: str


DEMO_MERCHANTS = (
    DemoMerchant("M1000", "Bäckerei Sonnenschein", "Anna Weber", "+49 30 5550 1000", "Berlin"),
    DemoMerchant("M1001", "老北京饺子馆 Old Beijing", "王伟", "+49 40 5550 1001", "Hamburg"),
    DemoMerchant("M1002", "Café Morgenrot", "Lukas Bauer", "+49 89 5550 1002", "München"),
    DemoMerchant("M1003", "华美超市 Huamei Asia Markt", "李娜", "+49 221 5550 1003", "Köln"),
    DemoMerchant("M1004", "Buchhandlung am Graben", "Eva Gruber", "+43 1 5550 1004", "Wien"),
)
"""One merchant per demo site (``M1000`` + the site's index), Latin and Chinese names."""


def provision_fleet(auth_dir: Path, count: int, prefix: str, broker_url: str, out: Path) -> Path:
    """Create broker credentials for ``count`` terminals and write them to a fleet file.

    Terminals are spread over a few sites and merchants so the dashboard has something
    to group by; each carries its merchant's and site's names for the inventory.
    Returns the fleet file's path.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    ids = [f"{prefix}-{i:05d}" for i in range(1, count + 1)]
    credentials = BrokerAuthStore(auth_dir).add_terminals(ids)
    terminals = []
    for i, creds in enumerate(credentials, start=1):
        site = i % len(DEMO_SITES)
        merchant = DEMO_MERCHANTS[site]
        terminals.append(
            FleetTerminal(
                terminal_id=creds.username,
                password=creds.password,
                merchant_id=merchant.merchant_id,
                merchant_name=merchant.name,
                site_id=DEMO_SITES[site],
                site_name=DEMO_SITE_NAMES[site],
                timezone=DEMO_TIMEZONES[site],
                seed=i,
            )
        )
    return write_fleet_file(out, FleetFile(broker_url=broker_url, terminals=terminals))


async def record_demo_merchants(conn: AsyncConnection) -> int:
    """Give the demo's merchants their names, contacts and phones (as an import would)."""
    from posfleet.store.merchants import MerchantChange, import_merchants

    rows = [
        (
            m.merchant_id,
            MerchantChange(
                name=m.name, contact_name=m.contact_name, contact_phone=m.contact_phone, city=m.city
            ),
        )
        for m in DEMO_MERCHANTS
    ]
    return await import_merchants(conn, rows, actor="demo")
