"""Merchant cases (complaint follow-up): cases, their terminals, notes and links.

Revision ID: 0013_cases
Revises: 0012_config_backups
Create Date: 2026-12-06

A case is a merchant's complaint followed until the merchant confirms it is settled;
its terminals, its timeline (notes, state changes with reasons) and its links to
incidents, remote commands and playbook runs sit in tables of their own.

Types are spelled out here rather than imported from posfleet.store.schema, so this
revision keeps creating the same tables whatever the schema module becomes later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013_cases"
down_revision: str | None = "0012_config_backups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATES = ("open", "waiting_merchant", "waiting_onsite", "resolved", "closed")
_CHANNELS = ("phone", "email", "walk_in", "chat")
_PRIORITIES = ("low", "normal", "high", "urgent")
_LINK_KINDS = ("incident", "command", "playbook_run")


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


def _case_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["case_id"], ["cases.id"], name=f"fk_{table}_case_id_cases", ondelete="CASCADE"
    )


def upgrade() -> None:
    """Create the case tables."""
    op.create_table(
        "cases",
        _id(),
        sa.Column("merchant_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("complaint", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("caller_name", sa.String(128), server_default="", nullable=False),
        sa.Column("caller_phone", sa.String(64), server_default="", nullable=False),
        sa.Column("assignee", sa.String(128)),
        sa.Column("opened_by", sa.String(128), nullable=False),
        sa.Column("opened_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("first_response_at", _ts()),
        sa.Column("resolved_at", _ts()),
        sa.Column("closed_at", _ts()),
        sa.Column("merchant_confirmation", sa.Text()),
        sa.Column("follow_up_on", sa.Date()),
        sa.Column("follow_up_note", sa.String(200), server_default="", nullable=False),
        sa.CheckConstraint(_check("state", _STATES), name="ck_cases_state"),
        sa.CheckConstraint(_check("channel", _CHANNELS), name="ck_cases_channel"),
        sa.CheckConstraint(_check("priority", _PRIORITIES), name="ck_cases_priority"),
        sa.PrimaryKeyConstraint("id", name="pk_cases"),
    )
    op.create_index("ix_cases_state_follow_up_on", "cases", ["state", "follow_up_on"])
    op.create_index("ix_cases_merchant_id_id", "cases", ["merchant_id", "id"])
    op.create_index("ix_cases_assignee_state", "cases", ["assignee", "state"])
    op.create_table(
        "case_terminals",
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("terminal_id", sa.String(64), nullable=False),
        _case_fk("case_terminals"),
        sa.PrimaryKeyConstraint("case_id", "terminal_id", name="pk_case_terminals"),
    )
    op.create_index(
        "ix_case_terminals_terminal_id_case_id", "case_terminals", ["terminal_id", "case_id"]
    )
    op.create_table(
        "case_notes",
        _id(),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("ts", _ts(), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("detail", _json(), nullable=False),
        _case_fk("case_notes"),
        sa.PrimaryKeyConstraint("id", name="pk_case_notes"),
    )
    op.create_index("ix_case_notes_case_id_id", "case_notes", ["case_id", "id"])
    op.create_table(
        "case_links",
        _id(),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(64), nullable=False),
        sa.Column("linked_by", sa.String(128), nullable=False),
        sa.Column("linked_at", _ts(), nullable=False),
        sa.CheckConstraint(_check("kind", _LINK_KINDS), name="ck_case_links_kind"),
        _case_fk("case_links"),
        sa.PrimaryKeyConstraint("id", name="pk_case_links"),
        sa.UniqueConstraint("case_id", "kind", "ref", name="uq_case_links_case_id_kind_ref"),
    )
    op.create_index("ix_case_links_kind_ref", "case_links", ["kind", "ref"])


def downgrade() -> None:
    """Drop the case tables."""
    op.drop_table("case_links")
    op.drop_table("case_notes")
    op.drop_table("case_terminals")
    op.drop_table("cases")
