"""Firmware artifacts: one row per signed image stored under ``var/artifacts/<sha256>``.

Revision ID: 0007_firmware_artifacts
Revises: 0006_rollups_from_samples
Create Date: 2026-12-02

Types are spelled out here rather than imported from posfleet.store.schema, so this
revision keeps creating the same table whatever the schema module becomes later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_firmware_artifacts"
down_revision: str | None = "0006_rollups_from_samples"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Create ``firmware_artifacts``."""
    op.create_table(
        "firmware_artifacts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("models", _json(), nullable=False),
        sa.Column("min_version", sa.String(64)),
        sa.Column("allow_downgrade", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("release_notes", sa.Text(), server_default="", nullable=False),
        sa.Column("signed_manifest", _json(), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("uploaded_by", sa.String(128), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("size > 0", name="ck_firmware_artifacts_size"),
        sa.PrimaryKeyConstraint("id", name="pk_firmware_artifacts"),
        sa.UniqueConstraint("sha256", name="uq_firmware_artifacts_sha256"),
    )
    op.create_index("ix_firmware_artifacts_name_version", "firmware_artifacts", ["name", "version"])
    op.create_index("ix_firmware_artifacts_uploaded_at", "firmware_artifacts", ["uploaded_at"])


def downgrade() -> None:
    """Drop ``firmware_artifacts`` (the blobs under var/artifacts stay on disk)."""
    op.drop_table("firmware_artifacts")
