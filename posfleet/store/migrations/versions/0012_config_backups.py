"""Configuration backups, restores onto replacement terminals, and replacement links.

Revision ID: 0012_config_backups
Revises: 0011_terminal_commands
Create Date: 2026-12-06

``config_backups`` keeps what a terminal's ``backup_config`` answered (its parameters;
secret ones only named in ``withheld``). ``config_restores`` ties a ``restore_config``
command to the backup it carries and the terminal it replaces, so that its result can
mark the old terminal replaced. ``terminals`` gains ``replaced_by``, ``replaces`` and
``replaced_at``: the registry's links between an old terminal and its replacement.

Types are spelled out here rather than imported from posfleet.store.schema, so this
revision keeps creating the same tables whatever the schema module becomes later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012_config_backups"
down_revision: str | None = "0011_terminal_commands"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Create the backup and restore tables and the terminals' replacement links."""
    op.create_table(
        "config_backups",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("taken_at", _ts(), nullable=False),
        sa.Column("firmware_version", sa.String(64)),
        sa.Column("params", _json(), nullable=False),
        sa.Column("withheld", _json(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("taken_by", sa.String(128), nullable=False),
        sa.Column("command_id", sa.String(64)),
        sa.CheckConstraint("source IN ('scheduled', 'manual')", name="ck_config_backups_source"),
        sa.PrimaryKeyConstraint("id", name="pk_config_backups"),
        sa.UniqueConstraint("command_id", name="uq_config_backups_command_id"),
    )
    op.create_index(
        "ix_config_backups_terminal_id_taken_at", "config_backups", ["terminal_id", "taken_at"]
    )
    op.create_table(
        "config_restores",
        sa.Column("command_id", sa.String(64), nullable=False),
        sa.Column("backup_id", sa.BigInteger(), nullable=False),
        sa.Column("source_terminal_id", sa.String(64), nullable=False),
        sa.Column("target_terminal_id", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("requested_at", _ts(), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("replaced_at", _ts()),
        sa.ForeignKeyConstraint(
            ["backup_id"],
            ["config_backups.id"],
            name="fk_config_restores_backup_id_config_backups",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("command_id", name="pk_config_restores"),
    )
    op.create_index(
        "ix_config_restores_target_terminal_id", "config_restores", ["target_terminal_id"]
    )
    op.create_index("ix_config_restores_backup_id", "config_restores", ["backup_id"])
    with op.batch_alter_table("terminals") as batch:
        batch.add_column(sa.Column("replaced_by", sa.String(64)))
        batch.add_column(sa.Column("replaces", sa.String(64)))
        batch.add_column(sa.Column("replaced_at", _ts()))


def downgrade() -> None:
    """Drop the backups, restores and replacement links."""
    with op.batch_alter_table("terminals") as batch:
        batch.drop_column("replaced_at")
        batch.drop_column("replaces")
        batch.drop_column("replaced_by")
    op.drop_table("config_restores")
    op.drop_table("config_backups")
