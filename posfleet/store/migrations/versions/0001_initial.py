"""Initial schema: fleet registry, telemetry, dead letters, accounts and audit log.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-23

Types are spelled out here rather than imported from posfleet.store.schema, so this
revision keeps creating the same tables whatever the schema module becomes later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE_CHECK = "role IN ('viewer', 'support', 'ops', 'admin')"


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _id() -> sa.Column:
    return sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
    )


def upgrade() -> None:
    """Create every table."""
    op.create_table(
        "terminals",
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(64)),
        sa.Column("serial", sa.String(64)),
        sa.Column("hw_revision", sa.String(32)),
        sa.Column("firmware_version", sa.String(64)),
        sa.Column("app_versions", _json()),
        sa.Column("merchant_id", sa.String(64)),
        sa.Column("site_id", sa.String(64)),
        sa.Column("timezone", sa.String(64)),
        sa.Column("capabilities", _json()),
        sa.Column("inventory_at", _ts()),
        sa.Column("agent_version", sa.String(64)),
        sa.Column("online", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("boot_id", sa.String(64)),
        sa.Column("state_at", _ts()),
        sa.Column("state_changed_at", _ts()),
        sa.Column("first_seen", _ts(), nullable=False),
        sa.Column("last_seen", _ts(), nullable=False),
        sa.Column("last_seq", sa.BigInteger()),
        sa.Column("seq_gaps", sa.Integer(), server_default="0", nullable=False),
        sa.Column("seq_duplicates", sa.Integer(), server_default="0", nullable=False),
        sa.Column("health", _json()),
        sa.Column("health_at", _ts()),
        sa.Column("health_seq", sa.BigInteger()),
        sa.PrimaryKeyConstraint("terminal_id", name="pk_terminals"),
    )
    op.create_index("ix_terminals_online_last_seen", "terminals", ["online", "last_seen"])
    for column in ("last_seen", "model", "firmware_version", "merchant_id", "site_id"):
        op.create_index(f"ix_terminals_{column}", "terminals", [column])

    op.create_table(
        "health_samples",
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts", _ts(), nullable=False),
        sa.Column("metrics", _json(), nullable=False),
        sa.ForeignKeyConstraint(
            ["terminal_id"],
            ["terminals.terminal_id"],
            name="fk_health_samples_terminal_id_terminals",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("terminal_id", "seq", name="pk_health_samples"),
    )
    op.create_index("ix_health_samples_terminal_id_ts", "health_samples", ["terminal_id", "ts"])
    op.create_index("ix_health_samples_ts", "health_samples", ["ts"])

    op.create_table(
        "fault_events",
        _id(),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts", _ts(), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("component", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.Column("zvt_result_code", sa.SmallInteger()),
        sa.ForeignKeyConstraint(
            ["terminal_id"],
            ["terminals.terminal_id"],
            name="fk_fault_events_terminal_id_terminals",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_fault_events"),
        sa.UniqueConstraint("terminal_id", "seq", name="uq_fault_events_terminal_id_seq"),
    )
    op.create_index("ix_fault_events_terminal_id_ts", "fault_events", ["terminal_id", "ts"])
    op.create_index("ix_fault_events_code_ts", "fault_events", ["code", "ts"])

    op.create_table(
        "dead_letters",
        _id(),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(256), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("first_seen", _ts(), nullable=False),
        sa.Column("last_seen", _ts(), nullable=False),
        sa.Column("count", sa.Integer(), server_default="1", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
        sa.UniqueConstraint("fingerprint", name="uq_dead_letters_fingerprint"),
    )
    op.create_index("ix_dead_letters_last_seen", "dead_letters", ["last_seen"])

    op.create_table(
        "users",
        _id(),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.CheckConstraint(ROLE_CHECK, name="ck_users_role"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )

    op.create_table(
        "api_tokens",
        _id(),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("last_used_at", _ts()),
        sa.Column("revoked", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.CheckConstraint(ROLE_CHECK, name="ck_api_tokens_role"),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )

    op.create_table(
        "audit_log",
        _id(),
        sa.Column("ts", _ts(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(256), server_default="", nullable=False),
        sa.Column("detail", _json(), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_ts", "audit_log", ["ts"])
    op.create_index("ix_audit_log_target_ts", "audit_log", ["target", "ts"])


def downgrade() -> None:
    """Drop every table (and with it every index)."""
    for table in (
        "audit_log",
        "api_tokens",
        "users",
        "dead_letters",
        "fault_events",
        "health_samples",
        "terminals",
    ):
        op.drop_table(table)
