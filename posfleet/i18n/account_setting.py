"""The language a staff account picked (``users.locale``), read and changed."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.i18n.negotiation import SUPPORTED_LOCALES
from posfleet.store.schema import users


class UnsupportedLocaleError(ValueError):
    """A language setting that is not one of the shipped languages."""

    def __init__(self, value: str) -> None:
        choices = ", ".join(SUPPORTED_LOCALES)
        super().__init__(f"unsupported language {value!r}; expected one of {choices}")
        self.value = value


async def user_locale(conn: AsyncConnection, user_id: int) -> str | None:
    """The account's language (``en``, ``zh_CN``), None when it follows the browser."""
    found = await conn.scalar(sa.select(users.c.locale).where(users.c.id == user_id))
    return found if isinstance(found, str) and found in SUPPORTED_LOCALES else None


async def set_user_locale(conn: AsyncConnection, user_id: int, locale: str | None) -> bool:
    """Set the account's language (None: follow the browser); False for an unknown user.

    Raises :class:`UnsupportedLocaleError` for a language that is not shipped.
    """
    if locale is not None and locale not in SUPPORTED_LOCALES:
        raise UnsupportedLocaleError(locale)
    result = await conn.execute(sa.update(users).where(users.c.id == user_id).values(locale=locale))
    return bool(result.rowcount)
