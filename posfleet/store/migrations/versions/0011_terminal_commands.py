"""Remote commands staff send to a terminal, with their results.

Revision ID: 0011_terminal_commands
Revises: 0010_merchants_search
Create Date: 2026-12-06

One row per command a person (or a feature on their behalf: a backup, a restore) sends
to a terminal: who, when, why, the arguments, and what the terminal answered. The id is
the contract's command id, so the agent's ``cmd/result`` finds its row directly.

Types are spelled out here rather than imported from posfleet.store.schema, so this
revision keeps creating the same table whatever the schema module becomes later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011_terminal_commands"
down_revision: str | None = "0010_merchants_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATES = ("queued", "sent", "done", "failed", "rejected", "expired")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Create ``terminal_commands``."""
    op.create_table(
        "terminal_commands",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("args", _json(), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("issued_by", sa.String(128), nullable=False),
        sa.Column("issued_at", _ts(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=False),
        sa.Column("published_at", _ts()),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("output", _json()),
        sa.Column("error", sa.Text()),
        sa.Column("finished_at", _ts()),
        sa.Column("case_id", sa.BigInteger()),
        sa.CheckConstraint(
            "state IN ({})".format(", ".join(f"'{s}'" for s in _STATES)),
            name="ck_terminal_commands_state",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_terminal_commands"),
    )
    op.create_index(
        "ix_terminal_commands_terminal_id_issued_at",
        "terminal_commands",
        ["terminal_id", "issued_at"],
    )
    op.create_index(
        "ix_terminal_commands_state_expires_at", "terminal_commands", ["state", "expires_at"]
    )


def downgrade() -> None:
    """Drop ``terminal_commands`` (its records go with it)."""
    op.drop_index("ix_terminal_commands_state_expires_at", table_name="terminal_commands")
    op.drop_index("ix_terminal_commands_terminal_id_issued_at", table_name="terminal_commands")
    op.drop_table("terminal_commands")
