"""Firmware actions: one terminal's update of one artifact, and its status history.

Revision ID: 0008_firmware_actions
Revises: 0007_firmware_artifacts
Create Date: 2026-12-02

Types are spelled out here rather than imported from posfleet.store.schema, so this
revision keeps creating the same tables whatever the schema module becomes later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008_firmware_actions"
down_revision: str | None = "0007_firmware_artifacts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATES = (
    "created",
    "offered",
    "accepted",
    "waiting_window",
    "downloading",
    "verifying",
    "installing",
    "rebooting",
    "retrying",
    "succeeded",
    "failed",
    "rejected",
    "rolled_back",
    "timed_out",
    "cancelled",
)


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _id() -> sa.Column:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        autoincrement=True,
        nullable=False,
    )


def upgrade() -> None:
    """Create ``firmware_actions`` and ``firmware_action_events``."""
    states = ", ".join(f"'{s}'" for s in _STATES)
    op.create_table(
        "firmware_actions",
        _id(),
        sa.Column("artifact_id", sa.BigInteger(), nullable=False),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("open_key", sa.String(64)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float(), server_default="0", nullable=False),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.Column("window", _json(), nullable=False),
        sa.Column(
            "allow_downgrade_confirmed", sa.Boolean(), server_default=sa.false(), nullable=False
        ),
        sa.Column("from_version", sa.String(64)),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("offered_at", _ts()),
        sa.Column("deadline", _ts(), nullable=False),
        sa.Column("finished_at", _ts()),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_status_at", _ts()),
        sa.CheckConstraint(f"state IN ({states})", name="ck_firmware_actions_state"),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["firmware_artifacts.id"],
            name="fk_firmware_actions_artifact_id_firmware_artifacts",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_firmware_actions"),
        sa.UniqueConstraint("open_key", name="uq_firmware_actions_open_key"),
    )
    op.create_index("ix_firmware_actions_state_deadline", "firmware_actions", ["state", "deadline"])
    op.create_index(
        "ix_firmware_actions_terminal_id_created_at",
        "firmware_actions",
        ["terminal_id", "created_at"],
    )
    op.create_index(
        "ix_firmware_actions_artifact_id_state", "firmware_actions", ["artifact_id", "state"]
    )
    op.create_table(
        "firmware_action_events",
        _id(),
        sa.Column("action_id", sa.BigInteger(), nullable=False),
        sa.Column("ts", _ts(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float()),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.Column("reported_at", _ts()),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("action_state", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["action_id"],
            ["firmware_actions.id"],
            name="fk_firmware_action_events_action_id_firmware_actions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_firmware_action_events"),
        sa.UniqueConstraint(
            "action_id",
            "reported_at",
            "state",
            "progress",
            name="uq_firmware_action_events_status",
        ),
    )
    op.create_index(
        "ix_firmware_action_events_action_id_id", "firmware_action_events", ["action_id", "id"]
    )


def downgrade() -> None:
    """Drop both tables (artifacts stay)."""
    op.drop_table("firmware_action_events")
    op.drop_table("firmware_actions")
