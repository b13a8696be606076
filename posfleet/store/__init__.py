"""The central database: engine, schema, migrations and the repository functions.

SQLite (WAL) is the embedded default and PostgreSQL the production database; the same
code runs on both. Every table is declared in :mod:`posfleet.store.schema`.
"""

from posfleet.store.dead_letters import DeadLetter, list_dead_letters, record_dead_letter
from posfleet.store.engine import create_engine, default_database_url
from posfleet.store.errors import MigrationError, StoreError
from posfleet.store.migrate import upgrade, upgrade_engine
from posfleet.store.terminals import (
    TerminalRecord,
    apply_event,
    apply_health,
    apply_inventory,
    apply_state,
    get_terminal,
    list_terminals,
)

__all__ = [
    "DeadLetter",
    "MigrationError",
    "StoreError",
    "TerminalRecord",
    "apply_event",
    "apply_health",
    "apply_inventory",
    "apply_state",
    "create_engine",
    "default_database_url",
    "get_terminal",
    "list_dead_letters",
    "list_terminals",
    "record_dead_letter",
    "upgrade",
    "upgrade_engine",
]
