"""Failed logins per account and per client address, for the login throttle.

Revision ID: 0016_login_attempts
Revises: 0015_knowledge_base
Create Date: 2026-12-07

The throttle was in memory: a restart or a second instance forgot every failure. Its
counts are rows here now, one per account and one per client address. Types are spelled
out rather than imported from posfleet.store.schema, so this revision keeps creating the
same table whatever the schema module becomes later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_login_attempts"
down_revision: str | None = "0015_knowledge_base"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``login_attempts``."""
    op.create_table(
        "login_attempts",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("kind", "subject", name="pk_login_attempts"),
    )
    op.create_index("ix_login_attempts_last_failure_at", "login_attempts", ["last_failure_at"])


def downgrade() -> None:
    """Drop ``login_attempts``: the throttle starts from nothing."""
    op.drop_table("login_attempts")
