"""Hourly rollups are folded from stored samples behind a watermark.

Revision ID: 0006_rollups_from_samples
Revises: 0005_health_from_samples
Create Date: 2026-12-01

Until now every ingest batch merged its new samples into ``health_rollups``: one
upsert per report, since a batch holds about one report per terminal, which measured as
a sixth of the store writer's time. Samples now carry ``stored_id``, the order they were
stored in, and the writer folds everything past the watermark in ``rollup_progress``
into the rollups every minute or so, in one set-based statement that sums many reports
of the same terminal and hour into one row.

The samples already stored were merged when they arrived: they are numbered in their
storage order and the watermark starts after the last of them, so none is counted twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_rollups_from_samples"
down_revision: str | None = "0005_health_from_samples"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEQUENCE = "health_samples_stored_id_seq"


def upgrade() -> None:
    """Number the stored samples, then start the watermark after the last of them."""
    postgres = op.get_bind().dialect.name == "postgresql"
    op.add_column("health_samples", sa.Column("stored_id", sa.BigInteger()))
    if postgres:
        op.execute(f"CREATE SEQUENCE {_SEQUENCE}")
        op.execute(f"UPDATE health_samples SET stored_id = nextval('{_SEQUENCE}')")
    else:
        op.execute("UPDATE health_samples SET stored_id = rowid")
    with op.batch_alter_table("health_samples") as batch:
        batch.alter_column("stored_id", existing_type=sa.BigInteger(), nullable=False)
    op.create_index(
        "ix_health_samples_stored_id", "health_samples", ["stored_id"], unique=True
    )
    op.create_table(
        "rollup_progress",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("stored_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_rollup_progress"),
    )
    op.execute(
        "INSERT INTO rollup_progress (name, stored_id) "
        "SELECT 'health_rollups', coalesce(max(stored_id), 0) FROM health_samples"
    )


def downgrade() -> None:
    """Back to 0005_health_from_samples: rollups merged per batch again.

    Samples past the watermark were never folded in: stop the service first (the store
    writer folds when it stops), or their hours stay short by those reports.
    """
    op.drop_table("rollup_progress")
    op.drop_index("ix_health_samples_stored_id", table_name="health_samples")
    with op.batch_alter_table("health_samples") as batch:
        batch.drop_column("stored_id")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP SEQUENCE {_SEQUENCE}")
