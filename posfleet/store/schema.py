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
    # Which health report is the newest: its metrics are read from health_samples by
    # (terminal_id, health_seq), and retention never prunes that sample. Keeping a copy
    # here made every report rewrite its metrics into this row as well (see 0005).
    sa.Column("health_at", UtcDateTime()),
    sa.Column("health_seq", sa.BigInteger()),
    # Heartbeat watch: a terminal whose next report is overdue by 2x its interval is
    # marked offline by the sweeper even if the broker never fired its LWT.
    sa.Column("report_interval_s", sa.Integer()),
    sa.Column("heartbeat_due_at", UtcDateTime()),
    sa.Column("offline_reason", sa.String(16)),
    # Every list filter is paired with terminal_id so that a filtered page is one index
    # range scan in keyset order, fast at 100,000 terminals.
    # No index on heartbeat_due_at: it changes with every report, and the sweeper's
    # periodic scan of the table is far cheaper than maintaining one on the hot path.
    sa.Index(None, "online", "terminal_id"),
    sa.Index(None, "last_seen", "terminal_id"),
    sa.Index(None, "model", "terminal_id"),
    sa.Index(None, "firmware_version", "terminal_id"),
    sa.Index(None, "merchant_id", "terminal_id"),
    sa.Index(None, "site_id", "terminal_id"),
    sa.Index(None, "serial"),
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
    # The order samples were stored in: hourly rollups are folded from the samples past
    # the watermark in ``rollup_progress`` (see posfleet.store.sample_rollups). Numbered
    # by the writer under SQLite's write lock, from SAMPLE_IDS on PostgreSQL.
    sa.Column("stored_id", sa.BigInteger(), nullable=False),
    # For retention; a terminal's own samples are found by the key.
    sa.Index(None, "ts"),
    sa.Index(None, "stored_id", unique=True),
)

SAMPLE_IDS = sa.Sequence("health_samples_stored_id_seq", metadata=metadata)
"""Numbers ``health_samples.stored_id`` on PostgreSQL (SQLite has no sequences)."""

rollup_progress = sa.Table(
    "rollup_progress",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    # Every sample with a stored_id up to this one is in the hourly rollups.
    sa.Column("stored_id", sa.BigInteger(), nullable=False),
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

health_rollups = sa.Table(
    "health_rollups",
    metadata,
    sa.Column(
        "terminal_id",
        sa.String(64),
        sa.ForeignKey("terminals.terminal_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # Start of the UTC hour the samples were taken in (by the report's own ts).
    sa.Column("hour", UtcDateTime(), primary_key=True),
    sa.Column("samples", sa.Integer(), nullable=False),
    # Sums and counts rather than averages, so that merging a batch is an addition.
    sa.Column("temperature_sum", sa.Float(), nullable=False, server_default="0"),
    sa.Column("temperature_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("temperature_max", sa.Float()),
    sa.Column("battery_min", sa.Float()),
    sa.Column("rssi_min", sa.Integer()),
    sa.Column("host_unreachable", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("printer_faults", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("tamper", sa.Integer(), nullable=False, server_default="0"),
    # Counters are cumulative since reboot; the hour's maximum is what the terminal reached.
    sa.Column("reader_reads_max", sa.BigInteger()),
    sa.Column("reader_errors_max", sa.BigInteger()),
    sa.Column("declined_max", sa.BigInteger()),
    sa.Index(None, "hour"),
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

# --- diagnostics tables below (owned by posfleet.diagnostics) ---

INCIDENT_STATES = ("open", "acknowledged", "resolved")
"""Lifecycle of an incident; only ``resolved`` ones have no ``open_key``."""

PLAYBOOK_RUN_STATES = ("running", "succeeded", "failed", "timed_out")
"""Every playbook run ends in one of the last three, server-side deadline included."""

_INCIDENT_STATE_CHECK = "state IN ({})".format(", ".join(f"'{s}'" for s in INCIDENT_STATES))
_RUN_STATE_CHECK = "state IN ({})".format(", ".join(f"'{s}'" for s in PLAYBOOK_RUN_STATES))

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    # No foreign key to terminals: an incident's history outlives a decommissioned terminal.
    sa.Column("terminal_id", sa.String(64)),
    sa.Column("rule_id", sa.String(128), nullable=False),
    # "<terminal>/<rule>" (or "fleet/<group>") while not resolved, NULL once resolved. The
    # unique constraint is what makes one open incident per (terminal, rule) hold under
    # any concurrency, on SQLite and PostgreSQL alike (both allow many NULLs).
    sa.Column("open_key", sa.String(256), unique=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("component", sa.String(32), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("escalation", sa.String(16), nullable=False),
    sa.Column("cause", sa.Text(), nullable=False),
    sa.Column("remedy", json_document(), nullable=False),
    sa.Column("facts", json_document(), nullable=False),
    sa.Column("parent_id", sa.BigInteger(), sa.ForeignKey("incidents.id", ondelete="SET NULL")),
    sa.Column("correlation", sa.String(200)),
    # What the terminal was when the incident opened, for analytics by model, firmware, site.
    sa.Column("model", sa.String(64)),
    sa.Column("firmware_version", sa.String(64)),
    sa.Column("site_id", sa.String(64)),
    sa.Column("merchant_id", sa.String(64)),
    sa.Column("opened_at", UtcDateTime(), nullable=False),
    sa.Column("last_seen_at", UtcDateTime(), nullable=False),
    sa.Column("acknowledged_at", UtcDateTime()),
    sa.Column("resolved_at", UtcDateTime()),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("occurrences", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("reopen_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("assignee", sa.String(128)),
    sa.Column("acknowledged_by", sa.String(128)),
    sa.Column("resolved_by", sa.String(128)),
    sa.Column("resolution", sa.Text(), nullable=False, server_default=""),
    sa.Column("escalated_to", sa.String(16)),
    sa.CheckConstraint(_INCIDENT_STATE_CHECK, name="state"),
    sa.CheckConstraint("kind IN ('terminal', 'fleet')", name="kind"),
    sa.Index(None, "state", "opened_at"),
    sa.Index(None, "terminal_id", "rule_id", "resolved_at"),
    sa.Index(None, "rule_id", "opened_at"),
    sa.Index(None, "parent_id"),
    sa.Index(None, "opened_at"),
)

incident_notes = sa.Table(
    "incident_notes",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column(
        "incident_id",
        sa.BigInteger(),
        sa.ForeignKey("incidents.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("ts", UtcDateTime(), nullable=False),
    sa.Column("author", sa.String(128), nullable=False),
    # note (staff), command (a linked remote command), playbook (a run's outcome), system.
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("detail", json_document(), nullable=False),
    sa.Index(None, "incident_id", "ts"),
)

playbook_runs = sa.Table(
    "playbook_runs",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("incident_id", sa.BigInteger(), sa.ForeignKey("incidents.id", ondelete="SET NULL")),
    sa.Column("terminal_id", sa.String(64), nullable=False),
    sa.Column("playbook", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("verdict", sa.Text(), nullable=False, server_default=""),
    sa.Column("remedy", json_document(), nullable=False),
    sa.Column("steps", json_document(), nullable=False),
    sa.Column("started_by", sa.String(128), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("deadline_at", UtcDateTime(), nullable=False),
    sa.Column("finished_at", UtcDateTime()),
    sa.CheckConstraint(_RUN_STATE_CHECK, name="state"),
    sa.Index(None, "incident_id"),
    sa.Index(None, "terminal_id", "started_at"),
    sa.Index(None, "state", "deadline_at"),
)
