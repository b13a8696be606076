"""The scheduled report summaries sent, one row per period: the claim between instances.

Revision ID: 0019_report_summaries
Revises: 0018_fleet_overview
Create Date: 2026-12-07

Every central instance runs the summary schedule; the one whose insert of the period's
row succeeds sends it, so two instances never send the same summary twice.

Types are spelled out here rather than imported from posfleet.store.schema, so this
revision keeps creating the same table whatever the schema module becomes later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019_report_summaries"
down_revision: str | None = "0018_fleet_overview"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create ``report_summaries``."""
    op.create_table(
        "report_summaries",
        sa.Column("period_key", sa.String(64), nullable=False),
        sa.Column("since", _ts(), nullable=False),
        sa.Column("until", _ts(), nullable=False),
        sa.Column("claimed_by", sa.String(256), nullable=False),
        sa.Column("claimed_at", _ts(), nullable=False),
        sa.Column("sent_at", _ts()),
        sa.Column("delivered", sa.Integer(), server_default="0", nullable=False),
        sa.Column("summary", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
        sa.PrimaryKeyConstraint("period_key", name="pk_report_summaries"),
    )


def downgrade() -> None:
    """Drop ``report_summaries``: the next due summary is sent again."""
    op.drop_table("report_summaries")
