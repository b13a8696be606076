"""What the overview page reads instead of scanning the fleet.

Revision ID: 0018_fleet_overview
Revises: 0017_user_locale
Create Date: 2026-12-07

Two indexes, no counter tables: the fleet by model, firmware version and presence is
one scan of a narrow index (never of the table), and the incidents get an index led by
their state that also holds kind, severity and terminal, so counting the unresolved
ones reads only their stretch of the index. docs/overview.md says why this rather than
counters kept by triggers.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018_fleet_overview"
down_revision: str | None = "0017_user_locale"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the two indexes."""
    op.create_index(
        "ix_terminals_model_firmware_version_online",
        "terminals",
        ["model", "firmware_version", "online"],
    )
    op.create_index(
        "ix_incidents_state_kind_severity_terminal_id",
        "incidents",
        ["state", "kind", "severity", "terminal_id"],
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_incidents_state_kind_severity_terminal_id", "incidents")
    op.drop_index("ix_terminals_model_firmware_version_online", "terminals")
