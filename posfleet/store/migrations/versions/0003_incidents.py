"""Diagnostics: incidents (one open per terminal and rule), their notes, playbook runs.

Revision ID: 0003_incidents
Revises: 0002_ingest_scale
Create Date: 2026-11-23

Types are spelled out here rather than imported from posfleet.store.schema, so this
revision keeps creating the same tables whatever the schema module becomes later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_incidents"
down_revision: str | None = "0002_ingest_scale"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _id() -> sa.Column:
    return sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
    )


def upgrade() -> None:
    """Create the incident tables."""
    op.create_table(
        "incidents",
        _id(),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("terminal_id", sa.String(64)),
        sa.Column("rule_id", sa.String(128), nullable=False),
        sa.Column("open_key", sa.String(256)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("component", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("escalation", sa.String(16), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("remedy", _json(), nullable=False),
        sa.Column("facts", _json(), nullable=False),
        sa.Column("parent_id", sa.BigInteger()),
        sa.Column("correlation", sa.String(200)),
        sa.Column("model", sa.String(64)),
        sa.Column("firmware_version", sa.String(64)),
        sa.Column("site_id", sa.String(64)),
        sa.Column("merchant_id", sa.String(64)),
        sa.Column("opened_at", _ts(), nullable=False),
        sa.Column("last_seen_at", _ts(), nullable=False),
        sa.Column("acknowledged_at", _ts()),
        sa.Column("resolved_at", _ts()),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("occurrences", sa.Integer(), server_default="1", nullable=False),
        sa.Column("reopen_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("assignee", sa.String(128)),
        sa.Column("acknowledged_by", sa.String(128)),
        sa.Column("resolved_by", sa.String(128)),
        sa.Column("resolution", sa.Text(), server_default="", nullable=False),
        sa.Column("escalated_to", sa.String(16)),
        sa.CheckConstraint(
            "state IN ('open', 'acknowledged', 'resolved')", name="ck_incidents_state"
        ),
        sa.CheckConstraint("kind IN ('terminal', 'fleet')", name="ck_incidents_kind"),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["incidents.id"], name="fk_incidents_parent_id_incidents", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_incidents"),
        sa.UniqueConstraint("open_key", name="uq_incidents_open_key"),
    )
    op.create_index("ix_incidents_state_opened_at", "incidents", ["state", "opened_at"])
    op.create_index(
        "ix_incidents_terminal_id_rule_id_resolved_at",
        "incidents",
        ["terminal_id", "rule_id", "resolved_at"],
    )
    op.create_index("ix_incidents_rule_id_opened_at", "incidents", ["rule_id", "opened_at"])
    op.create_index("ix_incidents_parent_id", "incidents", ["parent_id"])
    op.create_index("ix_incidents_opened_at", "incidents", ["opened_at"])

    op.create_table(
        "incident_notes",
        _id(),
        sa.Column("incident_id", sa.BigInteger(), nullable=False),
        sa.Column("ts", _ts(), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("detail", _json(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name="fk_incident_notes_incident_id_incidents",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_incident_notes"),
    )
    op.create_index("ix_incident_notes_incident_id_ts", "incident_notes", ["incident_id", "ts"])

    op.create_table(
        "playbook_runs",
        _id(),
        sa.Column("incident_id", sa.BigInteger()),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("playbook", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("verdict", sa.Text(), server_default="", nullable=False),
        sa.Column("remedy", _json(), nullable=False),
        sa.Column("steps", _json(), nullable=False),
        sa.Column("started_by", sa.String(128), nullable=False),
        sa.Column("started_at", _ts(), nullable=False),
        sa.Column("deadline_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts()),
        sa.CheckConstraint(
            "state IN ('running', 'succeeded', 'failed', 'timed_out')", name="ck_playbook_runs_state"
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name="fk_playbook_runs_incident_id_incidents",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_playbook_runs"),
    )
    op.create_index("ix_playbook_runs_incident_id", "playbook_runs", ["incident_id"])
    op.create_index(
        "ix_playbook_runs_terminal_id_started_at", "playbook_runs", ["terminal_id", "started_at"]
    )
    op.create_index("ix_playbook_runs_state_deadline_at", "playbook_runs", ["state", "deadline_at"])


def downgrade() -> None:
    """Drop the incident tables."""
    op.drop_table("playbook_runs")
    op.drop_table("incident_notes")
    op.drop_table("incidents")
