"""The central database: engine, schema, migrations and the repository functions.

SQLite (WAL) is the embedded default and PostgreSQL the production database; the same
code runs on both. Every table is declared in :mod:`posfleet.store.schema`.
"""

from posfleet.store.dead_letters import DeadLetter, list_dead_letters, record_dead_letter
from posfleet.store.engine import create_engine, default_database_url, write_transaction
from posfleet.store.errors import MigrationError, StoreError
from posfleet.store.health_rollups import HealthRollup, list_rollups
from posfleet.store.migrate import upgrade, upgrade_engine
from posfleet.store.presence import mark_silent_terminals_offline
from posfleet.store.report_batch import Report, Sample, record_reports
from posfleet.store.retention import PruneResult, prune_telemetry
from posfleet.store.sample_rollups import fold_samples, rollup_watermark
from posfleet.store.terminal_filters import TerminalFilter, TerminalSort
from posfleet.store.terminals import (
    TerminalRecord,
    apply_event,
    apply_health,
    apply_inventory,
    apply_state,
    get_terminal,
    hardware_owner,
    list_terminals,
)

__all__ = [
    "DeadLetter",
    "HealthRollup",
    "MigrationError",
    "PruneResult",
    "Report",
    "Sample",
    "StoreError",
    "TerminalFilter",
    "TerminalRecord",
    "TerminalSort",
    "apply_event",
    "apply_health",
    "apply_inventory",
    "apply_state",
    "create_engine",
    "default_database_url",
    "fold_samples",
    "get_terminal",
    "hardware_owner",
    "list_dead_letters",
    "list_rollups",
    "list_terminals",
    "mark_silent_terminals_offline",
    "prune_telemetry",
    "record_dead_letter",
    "record_reports",
    "rollup_watermark",
    "upgrade",
    "upgrade_engine",
    "write_transaction",
]
