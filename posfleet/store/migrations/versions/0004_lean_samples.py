"""Leaner raw samples: rollups merged from Python, no batch ids, one index fewer.

Revision ID: 0004_lean_samples
Revises: 0003_incidents
Create Date: 2026-11-23

Hourly rollups are now summed from each report's validated model as it is stored, so
``health_samples.batch_id`` (which let SQL find a batch's rows) and its index go. So does
the (terminal_id, ts) index, which no query used: a terminal's samples are found by the
(terminal_id, seq) key and retention prunes by ``ts`` alone. Each of those indexes cost
every stored report a write to a scattered page.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_lean_samples"
down_revision: str | None = "0003_incidents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Drop the batch id column and the two unused indexes."""
    op.drop_index("ix_health_samples_batch_id", table_name="health_samples")
    op.drop_index("ix_health_samples_terminal_id_ts", table_name="health_samples")
    with op.batch_alter_table("health_samples") as batch:
        batch.drop_column("batch_id")


def downgrade() -> None:
    """Back to 0003_incidents (the batch ids of stored samples are not recovered)."""
    with op.batch_alter_table("health_samples") as batch:
        batch.add_column(sa.Column("batch_id", sa.BigInteger()))
    op.create_index("ix_health_samples_terminal_id_ts", "health_samples", ["terminal_id", "ts"])
    op.create_index("ix_health_samples_batch_id", "health_samples", ["batch_id"])
