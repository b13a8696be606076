"""Rollouts: fleet firmware updates in waves, their targets, transitions and leases.

Revision ID: 0009_rollouts
Revises: 0008_firmware_actions
Create Date: 2026-12-09

``firmware_actions`` gains a nullable ``rollout_id``, so an Action knows the rollout that
created it, and a unique key on (rollout, terminal, artifact): a rollout offers one image
to one terminal once, however many central instances run it.

Types are spelled out here rather than imported from posfleet.store.schema, so this
revision keeps creating the same tables whatever the schema module becomes later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009_rollouts"
down_revision: str | None = "0008_firmware_actions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROLLOUT_STATES = (
    "draft",
    "previewed",
    "awaiting_approval",
    "running",
    "paused",
    "finished",
    "aborted",
    "rolled_back",
)
_WAVE_STATES = ("pending", "running", "soaking", "passed", "failed")


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


def _check(column: str, names: Sequence[str]) -> str:
    return "{} IN ({})".format(column, ", ".join(f"'{n}'" for n in names))


def upgrade() -> None:
    """Create the rollout tables and link Actions to their rollout."""
    op.create_table(
        "rollouts",
        _id(),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("artifact_id", sa.BigInteger(), nullable=False),
        sa.Column("rollback_artifact_id", sa.BigInteger()),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("target_filter", _json(), nullable=False),
        sa.Column("policy", _json(), nullable=False),
        sa.Column("current_wave", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("approved_by", sa.String(128)),
        sa.Column("approved_at", _ts()),
        sa.Column("started_at", _ts()),
        sa.Column("finished_at", _ts()),
        sa.Column("reason_code", sa.String(16), nullable=False),
        sa.Column("reason_text", sa.Text(), server_default="", nullable=False),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_until", _ts()),
        sa.Column("paused_reason", sa.Text()),
        sa.Column("incident_id", sa.BigInteger()),
        sa.CheckConstraint(_check("state", _ROLLOUT_STATES), name="ck_rollouts_state"),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["firmware_artifacts.id"],
            name="fk_rollouts_artifact_id_firmware_artifacts",
        ),
        sa.ForeignKeyConstraint(
            ["rollback_artifact_id"],
            ["firmware_artifacts.id"],
            name="fk_rollouts_rollback_artifact_id_firmware_artifacts",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name="fk_rollouts_incident_id_incidents",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_rollouts"),
    )
    op.create_index("ix_rollouts_state_lease_until", "rollouts", ["state", "lease_until"])
    op.create_index("ix_rollouts_created_at", "rollouts", ["created_at"])
    op.create_table(
        "rollout_groups",
        _id(),
        sa.Column("rollout_id", sa.BigInteger(), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("planned", sa.Integer(), nullable=False),
        sa.Column("started_at", _ts()),
        sa.Column("soak_until", _ts()),
        sa.Column("finished_at", _ts()),
        sa.Column("gate", _json()),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("accepted_by", sa.String(128)),
        sa.CheckConstraint(_check("state", _WAVE_STATES), name="ck_rollout_groups_state"),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name="fk_rollout_groups_rollout_id_rollouts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_rollout_groups"),
        sa.UniqueConstraint("rollout_id", "wave", name="uq_rollout_groups_rollout_id_wave"),
    )
    op.create_table(
        "rollout_targets",
        sa.Column("rollout_id", sa.BigInteger(), nullable=False),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("wave", sa.Integer()),
        sa.Column("site_id", sa.String(64)),
        sa.Column("from_version", sa.String(64)),
        sa.Column("excluded_reason", sa.String(32)),
        sa.Column("joined_late", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("added_at", _ts(), nullable=False),
        sa.Column("offer_at", _ts()),
        sa.Column("refused", sa.String(32)),
        sa.Column("action_id", sa.BigInteger()),
        sa.Column("rollback_action_id", sa.BigInteger()),
        sa.Column("rollback_refused", sa.String(32)),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name="fk_rollout_targets_rollout_id_rollouts",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["action_id"],
            ["firmware_actions.id"],
            name="fk_rollout_targets_action_id_firmware_actions",
        ),
        sa.ForeignKeyConstraint(
            ["rollback_action_id"],
            ["firmware_actions.id"],
            name="fk_rollout_targets_rollback_action_id_firmware_actions",
        ),
        sa.PrimaryKeyConstraint("rollout_id", "terminal_id", name="pk_rollout_targets"),
    )
    op.create_index(
        "ix_rollout_targets_rollout_id_wave_offer_at",
        "rollout_targets",
        ["rollout_id", "wave", "offer_at"],
    )
    op.create_index("ix_rollout_targets_action_id", "rollout_targets", ["action_id"])
    op.create_table(
        "rollout_transitions",
        _id(),
        sa.Column("rollout_id", sa.BigInteger(), nullable=False),
        sa.Column("ts", _ts(), nullable=False),
        sa.Column("command", sa.String(24), nullable=False),
        sa.Column("from_state", sa.String(24)),
        sa.Column("to_state", sa.String(24), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason_code", sa.String(16), nullable=False),
        sa.Column("reason_text", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name="fk_rollout_transitions_rollout_id_rollouts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_rollout_transitions"),
    )
    op.create_index(
        "ix_rollout_transitions_rollout_id_id", "rollout_transitions", ["rollout_id", "id"]
    )
    with op.batch_alter_table("firmware_actions") as batch:
        batch.add_column(sa.Column("rollout_id", sa.BigInteger()))
        batch.create_foreign_key(
            "fk_firmware_actions_rollout_id_rollouts", "rollouts", ["rollout_id"], ["id"]
        )
        batch.create_unique_constraint(
            "uq_firmware_actions_rollout_id_terminal_id_artifact_id",
            ["rollout_id", "terminal_id", "artifact_id"],
        )


def downgrade() -> None:
    """Drop the rollout tables and the Actions' link to them (the Actions stay)."""
    with op.batch_alter_table("firmware_actions") as batch:
        batch.drop_constraint(
            "uq_firmware_actions_rollout_id_terminal_id_artifact_id", type_="unique"
        )
        batch.drop_constraint("fk_firmware_actions_rollout_id_rollouts", type_="foreignkey")
        batch.drop_column("rollout_id")
    op.drop_table("rollout_transitions")
    op.drop_table("rollout_targets")
    op.drop_table("rollout_groups")
    op.drop_table("rollouts")
