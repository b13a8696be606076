"""The knowledge base: staff-written articles with their history, and the support lead role.

Revision ID: 0015_knowledge_base
Revises: 0014_staff_sessions
Create Date: 2026-12-07

``knowledge_articles`` holds each article in English and Chinese; ``knowledge_revisions``
keeps every edit whole (who, when, which fields, the content after it). The role checks of
``users`` and ``api_tokens`` gain ``lead`` (support lead), between support and ops.

Types are spelled out here rather than imported from posfleet.store.schema, so this
revision keeps creating the same tables whatever the schema module becomes later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015_knowledge_base"
down_revision: str | None = "0014_staff_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_ROLE_CHECK = "role IN ('viewer', 'support', 'ops', 'admin')"
NEW_ROLE_CHECK = "role IN ('viewer', 'support', 'lead', 'ops', 'admin')"


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _role_check(check: str) -> None:
    for table in ("users", "api_tokens"):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"ck_{table}_role", type_="check")
            batch.create_check_constraint(f"ck_{table}_role", check)


def upgrade() -> None:
    """Create the article and revision tables; allow the ``lead`` role."""
    op.create_table(
        "knowledge_articles",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("title_en", sa.String(200), server_default="", nullable=False),
        sa.Column("title_zh", sa.String(200), server_default="", nullable=False),
        sa.Column("symptoms_en", _json(), nullable=False),
        sa.Column("symptoms_zh", _json(), nullable=False),
        sa.Column("steps_en", _json(), nullable=False),
        sa.Column("steps_zh", _json(), nullable=False),
        sa.Column("models", _json(), nullable=False),
        sa.Column("rule_id", sa.String(96)),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_knowledge_articles"),
    )
    op.create_index("ix_knowledge_articles_rule_id", "knowledge_articles", ["rule_id"])
    op.create_table(
        "knowledge_revisions",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("article_id", sa.BigInteger(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("edited_by", sa.String(128), nullable=False),
        sa.Column("edited_at", _ts(), nullable=False),
        sa.Column("changed", _json(), nullable=False),
        sa.Column("content", _json(), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["knowledge_articles.id"],
            name="fk_knowledge_revisions_article_id_knowledge_articles",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_knowledge_revisions"),
        sa.UniqueConstraint(
            "article_id", "revision", name="uq_knowledge_revisions_article_id_revision"
        ),
    )
    _role_check(NEW_ROLE_CHECK)


def downgrade() -> None:
    """Drop the articles and their history; support leads become support."""
    for table in ("users", "api_tokens"):
        op.execute(sa.text(f"UPDATE {table} SET role = 'support' WHERE role = 'lead'"))
    _role_check(OLD_ROLE_CHECK)
    op.drop_table("knowledge_revisions")
    op.drop_table("knowledge_articles")
