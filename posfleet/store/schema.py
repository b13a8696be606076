"""Every table of the central database, in one :data:`metadata`.

The Alembic revisions under ``migrations/versions`` create exactly this schema; a test
compares the two so they cannot drift apart.
"""

from __future__ import annotations

import sqlalchemy as sa

from posfleet.store.column_types import UtcDateTime, big_id, json_document

ROLES = ("viewer", "support", "lead", "ops", "admin")
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
    # The language the user picked (en, zh_CN); NULL follows the browser (migration 0017).
    sa.Column("locale", sa.String(16)),
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

# --- firmware tables below (owned by posfleet.firmware) ---

firmware_artifacts = sa.Table(
    "firmware_artifacts",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    # The blob is var/artifacts/<sha256>; one row per image whatever its name.
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("models", json_document(), nullable=False),
    sa.Column("min_version", sa.String(64)),
    sa.Column("allow_downgrade", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("release_notes", sa.Text(), nullable=False, server_default=""),
    # The SignedManifest exactly as uploaded, so offers carry the release key's signature.
    sa.Column("signed_manifest", json_document(), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("uploaded_by", sa.String(128), nullable=False),
    sa.Column("uploaded_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint("size > 0", name="size"),
    sa.Index(None, "name", "version"),
    sa.Index(None, "uploaded_at"),
)

FIRMWARE_ACTION_STATES = (
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
"""Names of posfleet.firmware.action_states.ActionState (a test keeps the two equal)."""

_ACTION_STATE_CHECK = "state IN ({})".format(", ".join(f"'{s}'" for s in FIRMWARE_ACTION_STATES))

firmware_actions = sa.Table(
    "firmware_actions",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column(
        "artifact_id", sa.BigInteger(), sa.ForeignKey("firmware_artifacts.id"), nullable=False
    ),
    # No foreign key to terminals: an Action's history outlives a decommissioned terminal.
    sa.Column("terminal_id", sa.String(64), nullable=False),
    # The terminal id while the Action is open, NULL once final: at most one open Action
    # per terminal, under any concurrency, on both backends (both allow many NULLs).
    sa.Column("open_key", sa.String(64), unique=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("progress", sa.Float(), nullable=False, server_default="0"),
    sa.Column("detail", sa.Text(), nullable=False, server_default=""),
    sa.Column("window", json_document(), nullable=False),
    sa.Column("allow_downgrade_confirmed", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("from_version", sa.String(64)),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("offered_at", UtcDateTime()),
    sa.Column("deadline", UtcDateTime(), nullable=False),
    sa.Column("finished_at", UtcDateTime()),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    # The terminal's own ts of the newest status applied: older ones are stale.
    sa.Column("last_status_at", UtcDateTime()),
    # The rollout that created the Action (NULL for a push); a rollout offers one image
    # to one terminal once, however many central instances run it.
    sa.Column("rollout_id", sa.BigInteger(), sa.ForeignKey("rollouts.id")),
    sa.UniqueConstraint("rollout_id", "terminal_id", "artifact_id"),
    sa.CheckConstraint(_ACTION_STATE_CHECK, name="state"),
    sa.Index(None, "state", "deadline"),
    sa.Index(None, "terminal_id", "created_at"),
    sa.Index(None, "artifact_id", "state"),
)

firmware_action_events = sa.Table(
    "firmware_action_events",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column(
        "action_id",
        sa.BigInteger(),
        sa.ForeignKey("firmware_actions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("ts", UtcDateTime(), nullable=False),
    # terminal (an fw/status) or centre (offer, retry, deadline, cancel).
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    # What the terminal reported, or the state the centre moved the Action to.
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("progress", sa.Float()),
    sa.Column("detail", sa.Text(), nullable=False, server_default=""),
    sa.Column("reported_at", UtcDateTime()),
    # False for a status only recorded: late (after a final state) or stale.
    sa.Column("applied", sa.Boolean(), nullable=False),
    sa.Column("action_state", sa.String(16), nullable=False),
    sa.Column("note", sa.Text(), nullable=False, server_default=""),
    # A redelivered fw/status is the same row (centre events have no reported_at, and
    # NULLs never collide).
    sa.UniqueConstraint(
        "action_id", "reported_at", "state", "progress", name="uq_firmware_action_events_status"
    ),
    sa.Index(None, "action_id", "id"),
)

# --- rollout tables below (owned by posfleet.firmware.rollouts) ---

ROLLOUT_STATES = (
    "draft",
    "previewed",
    "awaiting_approval",
    "running",
    "paused",
    "finished",
    "aborted",
    "rolled_back",
)
"""Names of posfleet.firmware.rollout_model.RolloutState."""

WAVE_STATES = ("pending", "running", "soaking", "passed", "failed")
"""Names of posfleet.firmware.rollout_model.WaveState."""

rollouts = sa.Table(
    "rollouts",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column(
        "artifact_id", sa.BigInteger(), sa.ForeignKey("firmware_artifacts.id"), nullable=False
    ),
    # What a roll back offers the terminals already updated (their previous version).
    sa.Column("rollback_artifact_id", sa.BigInteger(), sa.ForeignKey("firmware_artifacts.id")),
    sa.Column("state", sa.String(24), nullable=False),
    sa.Column("target_filter", json_document(), nullable=False),
    sa.Column("policy", json_document(), nullable=False),
    sa.Column("current_wave", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("approved_by", sa.String(128)),
    sa.Column("approved_at", UtcDateTime()),
    sa.Column("started_at", UtcDateTime()),
    sa.Column("finished_at", UtcDateTime()),
    sa.Column("reason_code", sa.String(16), nullable=False),
    sa.Column("reason_text", sa.Text(), nullable=False, server_default=""),
    # The central instance advancing the rollout, until when: one at a time.
    sa.Column("lease_owner", sa.String(128)),
    sa.Column("lease_until", UtcDateTime()),
    sa.Column("paused_reason", sa.Text()),
    # The regression fleet incident the health gate opened, if any.
    sa.Column("incident_id", sa.BigInteger(), sa.ForeignKey("incidents.id", ondelete="SET NULL")),
    sa.CheckConstraint(
        "state IN ({})".format(", ".join(f"'{s}'" for s in ROLLOUT_STATES)), name="state"
    ),
    sa.Index(None, "state", "lease_until"),
    sa.Index(None, "created_at"),
)

rollout_groups = sa.Table(
    "rollout_groups",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column(
        "rollout_id",
        sa.BigInteger(),
        sa.ForeignKey("rollouts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("wave", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("planned", sa.Integer(), nullable=False),
    sa.Column("started_at", UtcDateTime()),
    sa.Column("soak_until", UtcDateTime()),
    sa.Column("finished_at", UtcDateTime()),
    # The business-health gate's verdict and figures, once it ran.
    sa.Column("gate", json_document()),
    sa.Column("reason", sa.Text(), nullable=False, server_default=""),
    # Who resumed the rollout after this wave stopped it: its thresholds stop it no more.
    sa.Column("accepted_by", sa.String(128)),
    sa.CheckConstraint(
        "state IN ({})".format(", ".join(f"'{s}'" for s in WAVE_STATES)), name="state"
    ),
    sa.UniqueConstraint("rollout_id", "wave"),
)

rollout_targets = sa.Table(
    "rollout_targets",
    metadata,
    sa.Column(
        "rollout_id",
        sa.BigInteger(),
        sa.ForeignKey("rollouts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # No foreign key to terminals: a rollout's history outlives a decommissioned terminal.
    sa.Column("terminal_id", sa.String(64), primary_key=True),
    # NULL for an excluded terminal.
    sa.Column("wave", sa.Integer()),
    sa.Column("site_id", sa.String(64)),
    sa.Column("from_version", sa.String(64)),
    sa.Column("excluded_reason", sa.String(32)),
    sa.Column("joined_late", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("added_at", UtcDateTime(), nullable=False),
    # When its offer is due (rate limit and jitter), set as its wave starts.
    sa.Column("offer_at", UtcDateTime()),
    # Why the push refused it when its offer was due (busy, same_version ...).
    sa.Column("refused", sa.String(32)),
    sa.Column("action_id", sa.BigInteger(), sa.ForeignKey("firmware_actions.id")),
    sa.Column("rollback_action_id", sa.BigInteger(), sa.ForeignKey("firmware_actions.id")),
    # Why a roll back could not offer it the previous version (already runs it ...).
    sa.Column("rollback_refused", sa.String(32)),
    sa.Index(None, "rollout_id", "wave", "offer_at"),
    sa.Index(None, "action_id"),
)

rollout_transitions = sa.Table(
    "rollout_transitions",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column(
        "rollout_id",
        sa.BigInteger(),
        sa.ForeignKey("rollouts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("ts", UtcDateTime(), nullable=False),
    sa.Column("command", sa.String(24), nullable=False),
    sa.Column("from_state", sa.String(24)),
    sa.Column("to_state", sa.String(24), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("reason_code", sa.String(16), nullable=False),
    sa.Column("reason_text", sa.Text(), nullable=False, server_default=""),
    sa.Index(None, "rollout_id", "id"),
)

# ---- merchants and terminal search (migration 0010)

MERCHANT_NAME_SOURCES = ("inventory", "staff")
"""Who named a merchant last: its terminals' inventory, or staff (import, API); staff win."""

# Both search_text columns have a pg_trgm GIN index, so LIKE '%part%' is an index scan;
# migration 0010 falls back to a btree index of the same name where the extension cannot
# be created (see docs/support-console.md). SQLite gets a plain index.

merchants = sa.Table(
    "merchants",
    metadata,
    sa.Column("merchant_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, server_default=""),
    sa.Column("contact_name", sa.String(128), nullable=False, server_default=""),
    sa.Column("contact_phone", sa.String(32), nullable=False, server_default=""),
    sa.Column("city", sa.String(64), nullable=False, server_default=""),
    # Case-folded id, names, city and the phone's digits, built by posfleet.store.merchants.
    sa.Column("search_text", sa.Text(), nullable=False, server_default=""),
    sa.Column("name_source", sa.String(16), nullable=False, server_default="inventory"),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("updated_by", sa.String(128), nullable=False),
    sa.CheckConstraint(
        "name_source IN ({})".format(", ".join(f"'{s}'" for s in MERCHANT_NAME_SOURCES)),
        name="name_source",
    ),
    sa.Index(
        None,
        "search_text",
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    ),
)

terminal_search = sa.Table(
    "terminal_search",
    metadata,
    # One narrow row per terminal, apart from the wide registry row, so a substring scan
    # on SQLite reads a few bytes per terminal; kept by posfleet.store.terminals.
    sa.Column(
        "terminal_id",
        sa.String(64),
        sa.ForeignKey("terminals.terminal_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("merchant_name", sa.String(128), nullable=False, server_default=""),
    sa.Column("site_name", sa.String(128), nullable=False, server_default=""),
    # Case-folded terminal id, serial, model, merchant id and name, site id and name.
    sa.Column("search_text", sa.Text(), nullable=False),
    sa.Index(
        None,
        "search_text",
        postgresql_using="gin",
        postgresql_ops={"search_text": "gin_trgm_ops"},
    ),
    sqlite_with_rowid=False,
)

# ---- configuration backups and replacement (migration 0012)

BACKUP_SOURCES = ("scheduled", "manual")
"""Who asked for a backup: the scheduled backups loop, or a person."""

config_backups = sa.Table(
    "config_backups",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    # No foreign key to terminals: a replaced terminal's backups outlive its row.
    sa.Column("terminal_id", sa.String(64), nullable=False),
    sa.Column("taken_at", UtcDateTime(), nullable=False),
    sa.Column("firmware_version", sa.String(64)),
    # Name to value; secret parameters never reach the centre: ``withheld`` only names them.
    sa.Column("params", json_document(), nullable=False),
    sa.Column("withheld", json_document(), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("taken_by", sa.String(128), nullable=False),
    # The backup_config command it answers: a redelivered result is stored once.
    sa.Column("command_id", sa.String(64), unique=True),
    sa.CheckConstraint(
        "source IN ({})".format(", ".join(f"'{s}'" for s in BACKUP_SOURCES)), name="source"
    ),
    sa.Index(None, "terminal_id", "taken_at"),
)

config_restores = sa.Table(
    "config_restores",
    metadata,
    # The restore_config command that carries the backup to the replacement terminal.
    sa.Column("command_id", sa.String(64), primary_key=True),
    sa.Column(
        "backup_id",
        sa.BigInteger(),
        sa.ForeignKey("config_backups.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("source_terminal_id", sa.String(64), nullable=False),
    sa.Column("target_terminal_id", sa.String(64), nullable=False),
    sa.Column("requested_by", sa.String(128), nullable=False),
    sa.Column("requested_at", UtcDateTime(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False, server_default=""),
    # Set when the terminal applied it and the registry linked old and new.
    sa.Column("replaced_at", UtcDateTime()),
    sa.Index(None, "target_terminal_id"),
    sa.Index(None, "backup_id"),
)

# The registry's replacement links, both ways; the old terminal's rows all stay.
terminals.append_column(sa.Column("replaced_by", sa.String(64)))
terminals.append_column(sa.Column("replaces", sa.String(64)))
terminals.append_column(sa.Column("replaced_at", UtcDateTime()))

# ---- merchant cases (migration 0013)

CASE_STATES = ("open", "waiting_merchant", "waiting_onsite", "resolved", "closed")
"""A case's life; only ``closed`` is final, and closing records the merchant's confirmation."""
CASE_CHANNELS = ("phone", "email", "walk_in", "chat")
CASE_PRIORITIES = ("low", "normal", "high", "urgent")
CASE_LINK_KINDS = ("incident", "command", "playbook_run")


def _one_of(column: str, names: tuple[str, ...]) -> str:
    return "{} IN ({})".format(column, ", ".join(f"'{n}'" for n in names))


cases = sa.Table(
    "cases",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    # No foreign key to merchants: a case may be opened for a merchant the registry
    # learns of later, and it outlives a merchant's record.
    sa.Column("merchant_id", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    # What the merchant said, in their words.
    sa.Column("complaint", sa.Text(), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("category", sa.String(32), nullable=False),
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("state", sa.String(24), nullable=False),
    sa.Column("caller_name", sa.String(128), nullable=False, server_default=""),
    sa.Column("caller_phone", sa.String(64), nullable=False, server_default=""),
    sa.Column("assignee", sa.String(128)),
    sa.Column("opened_by", sa.String(128), nullable=False),
    sa.Column("opened_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    # For reports: the first staff action after opening, and the (latest) resolution.
    sa.Column("first_response_at", UtcDateTime()),
    sa.Column("resolved_at", UtcDateTime()),
    sa.Column("closed_at", UtcDateTime()),
    sa.Column("merchant_confirmation", sa.Text()),
    # A calendar day: the reminder list asks "due today or overdue", not a time of day.
    sa.Column("follow_up_on", sa.Date()),
    sa.Column("follow_up_note", sa.String(200), nullable=False, server_default=""),
    sa.CheckConstraint(_one_of("state", CASE_STATES), name="state"),
    sa.CheckConstraint(_one_of("channel", CASE_CHANNELS), name="channel"),
    sa.CheckConstraint(_one_of("priority", CASE_PRIORITIES), name="priority"),
    sa.Index(None, "state", "follow_up_on"),
    sa.Index(None, "merchant_id", "id"),
    sa.Index(None, "assignee", "state"),
)

case_terminals = sa.Table(
    "case_terminals",
    metadata,
    sa.Column(
        "case_id", sa.BigInteger(), sa.ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    ),
    # No foreign key to terminals: a case outlives a swapped terminal's record.
    sa.Column("terminal_id", sa.String(64), primary_key=True),
    sa.Index(None, "terminal_id", "case_id"),
)

case_notes = sa.Table(
    "case_notes",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column(
        "case_id", sa.BigInteger(), sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("ts", UtcDateTime(), nullable=False),
    sa.Column("author", sa.String(128), nullable=False),
    # note (staff), state, link, follow_up, assign, opened: the case's timeline.
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("detail", json_document(), nullable=False),
    sa.Index(None, "case_id", "id"),
)

case_links = sa.Table(
    "case_links",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column(
        "case_id", sa.BigInteger(), sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("kind", sa.String(16), nullable=False),
    # The linked object's id as text (incident and run ids are numbers, command ids not);
    # no foreign key, as it points into one of three tables.
    sa.Column("ref", sa.String(64), nullable=False),
    sa.Column("linked_by", sa.String(128), nullable=False),
    sa.Column("linked_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint(_one_of("kind", CASE_LINK_KINDS), name="kind"),
    sa.UniqueConstraint("case_id", "kind", "ref"),
    sa.Index(None, "kind", "ref"),
)

# ---- remote diagnostics commands (migration 0011)

TERMINAL_COMMAND_STATES = ("queued", "sent", "done", "failed", "rejected", "expired")
"""A staff command's life: queued (not with the terminal yet), sent, then one final state."""

_COMMAND_STATE_CHECK = "state IN ({})".format(", ".join(f"'{s}'" for s in TERMINAL_COMMAND_STATES))

terminal_commands = sa.Table(
    "terminal_commands",
    metadata,
    # The contract's CommandId: the same id travels to the agent and back in its result.
    sa.Column("id", sa.String(64), primary_key=True),
    # No foreign key to terminals: a command's record outlives a decommissioned terminal.
    sa.Column("terminal_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("args", json_document(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False, server_default=""),
    sa.Column("issued_by", sa.String(128), nullable=False),
    sa.Column("issued_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    # When the broker took it; NULL while the broker was not reached (the sweeper retries).
    sa.Column("published_at", UtcDateTime()),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("output", json_document()),
    sa.Column("error", sa.Text()),
    sa.Column("finished_at", UtcDateTime()),
    # The case it was run for, if any (no foreign key: cases have a migration of their own).
    sa.Column("case_id", sa.BigInteger()),
    sa.CheckConstraint(_COMMAND_STATE_CHECK, name="state"),
    sa.Index(None, "terminal_id", "issued_at"),
    sa.Index(None, "state", "expires_at"),
)

# ---- staff sessions (migration 0014)

staff_sessions = sa.Table(
    "staff_sessions",
    metadata,
    # SHA-256 (hex) of the random id in the session cookie: the database alone opens nothing.
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column(
        "user_id", sa.BigInteger(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("last_seen_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    # Set by a logout, a disable, a password reset or an admin ending it; NULL while live.
    sa.Column("ended_at", UtcDateTime()),
    sa.Column("ended_reason", sa.String(32)),
    sa.Column("user_agent", sa.String(256), nullable=False, server_default=""),
    sa.Column("address", sa.String(64), nullable=False, server_default=""),
    sa.Index(None, "user_id"),
    sa.Index(None, "expires_at"),
)

# ---- knowledge base (migration 0015)
# Staff-written articles, each in English and Chinese (either may be empty). The built-in
# entries are files in the package, not rows. Every edit is kept whole as a revision.

KNOWLEDGE_TITLE_MAX = 200

knowledge_articles = sa.Table(
    "knowledge_articles",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("title_en", sa.String(KNOWLEDGE_TITLE_MAX), nullable=False, server_default=""),
    sa.Column("title_zh", sa.String(KNOWLEDGE_TITLE_MAX), nullable=False, server_default=""),
    # Lists of texts: what the merchant says, and the steps that fix it.
    sa.Column("symptoms_en", json_document(), nullable=False),
    sa.Column("symptoms_zh", json_document(), nullable=False),
    sa.Column("steps_en", json_document(), nullable=False),
    sa.Column("steps_zh", json_document(), nullable=False),
    # Terminal models the article applies to; an empty list for every model.
    sa.Column("models", json_document(), nullable=False),
    # The rule whose incidents the article helps with; no foreign key, rules are files.
    sa.Column("rule_id", sa.String(96)),
    sa.Column("revision", sa.Integer(), nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_by", sa.String(128), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Index(None, "rule_id"),
)

knowledge_revisions = sa.Table(
    "knowledge_revisions",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column(
        "article_id",
        sa.BigInteger(),
        sa.ForeignKey("knowledge_articles.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("revision", sa.Integer(), nullable=False),
    sa.Column("edited_by", sa.String(128), nullable=False),
    sa.Column("edited_at", UtcDateTime(), nullable=False),
    # The names of the fields this edit changed, and the article as it was after it.
    sa.Column("changed", json_document(), nullable=False),
    sa.Column("content", json_document(), nullable=False),
    sa.UniqueConstraint("article_id", "revision"),
)

# ---- login attempts (migration 0016)
# Failed logins, one row per account (the username as typed, folded to lower case) and
# one per client address (an IPv6 address by its /64), so the login throttle holds across
# restarts and instances. A row is forgotten once its failures are older than the
# throttle's window; a success clears its account's row.

login_attempts = sa.Table(
    "login_attempts",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),  # "account" or "address"
    sa.Column("subject", sa.String(128), primary_key=True),
    sa.Column("failures", sa.Integer(), nullable=False),
    sa.Column("last_failure_at", UtcDateTime(), nullable=False),
    # No attempt for this subject is checked before this time (NULL: no delay).
    sa.Column("blocked_until", UtcDateTime()),
    sa.Index(None, "last_failure_at"),
)

# ---- fleet overview aggregates (migration 0018)
# No counter table: the overview's counts are index-only reads (see
# posfleet.store.fleet_overview). Presence, model and firmware together in one index,
# so a single scan of it counts the fleet by all three; and the incidents by state with
# what the overview counts them by, so the unresolved ones are counted from the index
# alone, reading only the open work however long the history grows.
sa.Index(
    "ix_terminals_model_firmware_version_online",
    terminals.c.model,
    terminals.c.firmware_version,
    terminals.c.online,
)
sa.Index(
    "ix_incidents_state_kind_severity_terminal_id",
    incidents.c.state,
    incidents.c.kind,
    incidents.c.severity,
    incidents.c.terminal_id,
)

# ---- report summaries (migration 0019)

report_summaries = sa.Table(
    "report_summaries",
    metadata,
    # "daily:2026-12-07" or "weekly:2026-12-07" (the Monday): one row per summary period.
    # Inserting it is the claim that makes exactly one central instance send the summary.
    sa.Column("period_key", sa.String(64), primary_key=True),
    sa.Column("since", UtcDateTime(), nullable=False),
    sa.Column("until", UtcDateTime(), nullable=False),
    sa.Column("claimed_by", sa.String(256), nullable=False),
    sa.Column("claimed_at", UtcDateTime(), nullable=False),
    # NULL while the claimant is still sending; a claim left unsent past its lease (the
    # instance died) may be taken over by another.
    sa.Column("sent_at", UtcDateTime()),
    sa.Column("delivered", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("summary", json_document()),
)
