"""Staff sessions stored in the database.

Revision ID: 0014_staff_sessions
Revises: 0013_cases
Create Date: 2026-12-06

A browser session is a row here, not only a signed cookie: logging out or disabling a
user ends it on every dashboard instance at once, and a restart forgets nothing. The
row's id is the SHA-256 of the random id the cookie carries, so a copy of the database
opens no session.

Types are spelled out here rather than imported from posfleet.store.schema, so this
revision keeps creating the same table whatever the schema module becomes later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_staff_sessions"
down_revision: str | None = "0013_cases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create ``staff_sessions``."""
    op.create_table(
        "staff_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("last_seen_at", _ts(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=False),
        sa.Column("ended_at", _ts()),
        sa.Column("ended_reason", sa.String(32)),
        sa.Column("user_agent", sa.String(256), server_default="", nullable=False),
        sa.Column("address", sa.String(64), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_staff_sessions_user_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_staff_sessions"),
    )
    op.create_index("ix_staff_sessions_user_id", "staff_sessions", ["user_id"])
    op.create_index("ix_staff_sessions_expires_at", "staff_sessions", ["expires_at"])


def downgrade() -> None:
    """Drop ``staff_sessions``: every browser logs in again."""
    op.drop_table("staff_sessions")
