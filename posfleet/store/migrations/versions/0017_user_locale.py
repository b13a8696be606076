"""Each staff account's language.

``users.locale`` holds the language the user picked on their account page (``en``,
``zh_CN``); NULL, the default for every existing account, follows the browser's
``Accept-Language``.

Revision ID: 0017_user_locale
Revises: 0016_login_attempts
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_user_locale"
down_revision: str | None = "0016_login_attempts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable ``users.locale``."""
    op.add_column("users", sa.Column("locale", sa.String(16)))


def downgrade() -> None:
    """Drop ``users.locale`` (everyone follows the browser again)."""
    # A plain DROP COLUMN (SQLite 3.35+): rebuilding the table would cascade its sessions.
    op.drop_column("users", "locale")
