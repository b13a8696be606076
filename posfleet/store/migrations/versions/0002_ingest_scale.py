"""Ingest at scale: heartbeat watch, hourly health rollups, batch ids, fleet-list indexes.

Revision ID: 0002_ingest_scale
Revises: 0001_initial
Create Date: 2026-11-23

Types are spelled out here rather than imported from posfleet.store.schema, so this
revision keeps creating the same tables whatever the schema module becomes later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_ingest_scale"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_INDEXES = ("online_last_seen", "last_seen", "model", "firmware_version", "merchant_id", "site_id")
_NEW_INDEXES = (
    ("online", "terminal_id"),
    ("last_seen", "terminal_id"),
    ("model", "terminal_id"),
    ("firmware_version", "terminal_id"),
    ("merchant_id", "terminal_id"),
    ("site_id", "terminal_id"),
    ("serial",),
)


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add the heartbeat columns, the composite list indexes and ``health_rollups``."""
    with op.batch_alter_table("terminals") as batch:
        batch.add_column(sa.Column("report_interval_s", sa.Integer()))
        batch.add_column(sa.Column("heartbeat_due_at", _ts()))
        batch.add_column(sa.Column("offline_reason", sa.String(16)))
    with op.batch_alter_table("health_samples") as batch:
        batch.add_column(sa.Column("batch_id", sa.BigInteger()))
    op.create_index("ix_health_samples_batch_id", "health_samples", ["batch_id"])
    for suffix in _OLD_INDEXES:
        op.drop_index(f"ix_terminals_{suffix}", table_name="terminals")
    for columns in _NEW_INDEXES:
        op.create_index(f"ix_terminals_{'_'.join(columns)}", "terminals", list(columns))

    op.create_table(
        "health_rollups",
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("hour", _ts(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("temperature_sum", sa.Float(), server_default="0", nullable=False),
        sa.Column("temperature_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("temperature_max", sa.Float()),
        sa.Column("battery_min", sa.Float()),
        sa.Column("rssi_min", sa.Integer()),
        sa.Column("host_unreachable", sa.Integer(), server_default="0", nullable=False),
        sa.Column("printer_faults", sa.Integer(), server_default="0", nullable=False),
        sa.Column("tamper", sa.Integer(), server_default="0", nullable=False),
        sa.Column("reader_reads_max", sa.BigInteger()),
        sa.Column("reader_errors_max", sa.BigInteger()),
        sa.Column("declined_max", sa.BigInteger()),
        sa.ForeignKeyConstraint(
            ["terminal_id"],
            ["terminals.terminal_id"],
            name="fk_health_rollups_terminal_id_terminals",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("terminal_id", "hour", name="pk_health_rollups"),
    )
    op.create_index("ix_health_rollups_hour", "health_rollups", ["hour"])


def downgrade() -> None:
    """Back to 0001_initial."""
    op.drop_table("health_rollups")
    for columns in _NEW_INDEXES:
        op.drop_index(f"ix_terminals_{'_'.join(columns)}", table_name="terminals")
    op.create_index("ix_terminals_online_last_seen", "terminals", ["online", "last_seen"])
    for column in ("last_seen", "model", "firmware_version", "merchant_id", "site_id"):
        op.create_index(f"ix_terminals_{column}", "terminals", [column])
    op.drop_index("ix_health_samples_batch_id", table_name="health_samples")
    with op.batch_alter_table("health_samples") as batch:
        batch.drop_column("batch_id")
    with op.batch_alter_table("terminals") as batch:
        batch.drop_column("offline_reason")
        batch.drop_column("heartbeat_due_at")
        batch.drop_column("report_interval_s")
