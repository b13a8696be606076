"""Every table of the central database, in one :data:`metadata`.

The Alembic revisions under ``migrations/versions`` create exactly this schema; a test
compares the two so they cannot drift apart.
"""

from __future__ import annotations

import sqlalchemy as sa

from posfleet.store.column_types import UtcDateTime, big_id, json_document

ROLES = ("viewer", "support", "ops", "admin")
"""Staff roles from least to most privileged."""

metadata = sa.MetaData(
    # Explicit names so that later migrations can drop or alter a constraint by name
    # on both SQLite and PostgreSQL.
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_ROLE_CHECK = "role IN ({})".format(", ".join(f"'{role}'" for role in ROLES))

terminals = sa.Table(
    "terminals",
    metadata,
    sa.Column("terminal_id", sa.String(64), primary_key=True),
    # Inventory: NULL until the terminal's first inventory message arrives.
    sa.Column("model", sa.String(64)),
    sa.Column("serial", sa.String(64)),
    sa.Column("hw_revision", sa.String(32)),
    sa.Column("firmware_version", sa.String(64)),
    sa.Column("app_versions", json_document()),
    sa.Column("merchant_id", sa.String(64)),
    sa.Column("site_id", sa.String(64)),
    sa.Column("timezone", sa.String(64)),
    sa.Column("capabilities", json_document()),
    sa.Column("inventory_at", UtcDateTime()),
    # Presence, from the retained state topic and its LWT.
    sa.Column("agent_version", sa.String(64)),
    sa.Column("online", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("boot_id", sa.String(64)),
    sa.Column("state_at", UtcDateTime()),
    sa.Column("state_changed_at", UtcDateTime()),
    sa.Column("first_seen", UtcDateTime(), nullable=False),
    sa.Column("last_seen", UtcDateTime(), nullable=False),
    # Sequence bookkeeping over health and events together (they share one counter).
    sa.Column("last_seq", sa.BigInteger()),
    sa.Column("seq_gaps", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("seq_duplicates", sa.Integer(), nullable=False, server_default="0"),
    # The newest health report, denormalised for the fleet list.
    sa.Column("health", json_document()),
    sa.Column("health_at", UtcDateTime()),
    sa.Column("health_seq", sa.BigInteger()),
    sa.Index(None, "online", "last_seen"),
    sa.Index(None, "last_seen"),
    sa.Index(None, "model"),
    sa.Index(None, "firmware_version"),
    sa.Index(None, "merchant_id"),
    sa.Index(None, "site_id"),
)

health_samples = sa.Table(
    "health_samples",
    metadata,
    sa.Column(
        "terminal_id",
        sa.String(64),
        sa.ForeignKey("terminals.terminal_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # The primary key is the idempotency key: a redelivered report is the same row.
    sa.Column("seq", sa.BigInteger(), primary_key=True),
    sa.Column("ts", UtcDateTime(), nullable=False),
    sa.Column("metrics", json_document(), nullable=False),
    sa.Index(None, "terminal_id", "ts"),
    sa.Index(None, "ts"),
)

fault_events = sa.Table(
    "fault_events",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column(
        "terminal_id",
        sa.String(64),
        sa.ForeignKey("terminals.terminal_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("ts", UtcDateTime(), nullable=False),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("component", sa.String(32), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False, server_default=""),
    sa.Column("zvt_result_code", sa.SmallInteger()),
    sa.UniqueConstraint("terminal_id", "seq"),
    sa.Index(None, "terminal_id", "ts"),
    sa.Index(None, "code", "ts"),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
    sa.Column("topic", sa.String(256), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("error", sa.Text(), nullable=False),
    sa.Column("first_seen", UtcDateTime(), nullable=False),
    sa.Column("last_seen", UtcDateTime(), nullable=False),
    sa.Column("count", sa.Integer(), nullable=False, server_default="1"),
    sa.Index(None, "last_seen"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.CheckConstraint(_ROLE_CHECK, name="role"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("last_used_at", UtcDateTime()),
    sa.Column("revoked", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.CheckConstraint(_ROLE_CHECK, name="role"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("ts", UtcDateTime(), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(256), nullable=False, server_default=""),
    sa.Column("detail", json_document(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False, server_default=""),
    sa.Index(None, "ts"),
    sa.Index(None, "target", "ts"),
)
