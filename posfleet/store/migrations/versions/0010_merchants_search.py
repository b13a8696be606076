"""Merchants and terminal search: merchant contacts, display names and search indexes.

Revision ID: 0010_merchants_search
Revises: 0009_rollouts
Create Date: 2026-12-06

``merchants`` keeps each merchant's name and the contact support staff call;
``terminal_search`` one narrow row of case-folded search text per terminal. On
PostgreSQL both search columns get a pg_trgm GIN index when ``CREATE EXTENSION pg_trgm``
succeeds (the extension ships with PostgreSQL; creating it needs the CREATE privilege on
the database); otherwise a btree index of the same name, and substring search scans.

Existing terminals get their search rows, and their merchant ids a merchant each, here.
Types are spelled out rather than imported from posfleet.store.schema, so this revision
keeps creating the same tables whatever the schema module becomes later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0010_merchants_search"
down_revision: str | None = "0009_rollouts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger(__name__)

_INDEXES = (
    ("ix_merchants_search_text", "merchants"),
    ("ix_terminal_search_search_text", "terminal_search"),
)
_BATCH = 5000


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _trigrams_available() -> bool:
    """Create pg_trgm if it is missing; False (and nothing changed) if that is refused."""
    bind = op.get_bind()
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as exc:
        log.warning(
            "pg_trgm cannot be created (%s): terminal search uses btree indexes and scans",
            str(exc.orig).splitlines()[0],
        )
        return False
    return True


def _create_search_indexes() -> None:
    trigrams = op.get_bind().dialect.name == "postgresql" and _trigrams_available()
    for name, table in _INDEXES:
        if trigrams:
            op.create_index(
                name,
                table,
                ["search_text"],
                postgresql_using="gin",
                postgresql_ops={"search_text": "gin_trgm_ops"},
            )
        else:
            op.create_index(name, table, ["search_text"])


def _fold(*parts: str | None) -> str:
    return "\n".join((part or "").casefold() for part in parts if part)


def _backfill() -> None:
    """Search rows for the terminals already registered, merchants for their merchant ids."""
    bind = op.get_bind()
    search = sa.table("terminal_search", sa.column("terminal_id"), sa.column("search_text"))
    rows = bind.execute(
        sa.text("SELECT terminal_id, serial, model, merchant_id, site_id FROM terminals")
    ).all()
    for start in range(0, len(rows), _BATCH):
        values = [
            {"terminal_id": r.terminal_id, "search_text": _fold(*r)}
            for r in rows[start : start + _BATCH]
        ]
        bind.execute(search.insert(), values)
    merchant_ids = sorted({r.merchant_id for r in rows if r.merchant_id})
    merchants = sa.table(
        "merchants",
        sa.column("merchant_id"),
        sa.column("search_text"),
        sa.column("updated_at"),
        sa.column("updated_by"),
    )
    now = datetime.now(UTC)
    if merchant_ids:
        bind.execute(
            merchants.insert(),
            [
                {
                    "merchant_id": m,
                    "search_text": m.casefold(),
                    "updated_at": now,
                    "updated_by": "migration",
                }
                for m in merchant_ids
            ],
        )


def upgrade() -> None:
    """Create the merchants and terminal_search tables, their indexes, and fill them."""
    op.create_table(
        "merchants",
        sa.Column("merchant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), server_default="", nullable=False),
        sa.Column("contact_name", sa.String(128), server_default="", nullable=False),
        sa.Column("contact_phone", sa.String(32), server_default="", nullable=False),
        sa.Column("city", sa.String(64), server_default="", nullable=False),
        sa.Column("search_text", sa.Text(), server_default="", nullable=False),
        sa.Column("name_source", sa.String(16), server_default="inventory", nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.CheckConstraint(
            "name_source IN ('inventory', 'staff')", name="ck_merchants_name_source"
        ),
        sa.PrimaryKeyConstraint("merchant_id", name="pk_merchants"),
    )
    op.create_table(
        "terminal_search",
        sa.Column("terminal_id", sa.String(64), nullable=False),
        sa.Column("merchant_name", sa.String(128), server_default="", nullable=False),
        sa.Column("site_name", sa.String(128), server_default="", nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["terminal_id"],
            ["terminals.terminal_id"],
            name="fk_terminal_search_terminal_id_terminals",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("terminal_id", name="pk_terminal_search"),
        sqlite_with_rowid=False,
    )
    _backfill()
    _create_search_indexes()


def downgrade() -> None:
    """Drop both tables (pg_trgm stays: other database objects may use it)."""
    for name, table in _INDEXES:
        op.drop_index(name, table_name=table)
    op.drop_table("terminal_search")
    op.drop_table("merchants")
