"""Opaque, signed paging cursors: the ``next`` of one page, passed back for the next.

A client pages without knowing ids: it sends back what the previous page called ``next``.
A cursor reads ``<position>.<tag>``, both base64url: the position is the last row's key
(an id or a terminal id) and the tag a truncated HMAC-SHA256 over the list's name and
the position, under a key derived from the dashboard's secret. So a cursor of one list
is refused by another, an edited or made-up one is refused with a 400 naming the
parameter, and a valid one always decodes to a key the database can hold (an id from 1
to 2**63 - 1), whatever the client sent.

Pure: no aiohttp request handling beyond the typed app key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Annotated

import pydantic
from aiohttp import web

from posfleet.dashboard.errors import InvalidParameterError
from posfleet.dashboard.query_params import MAX_ROW_ID

MAX_POSITION_BYTES = 256
"""The longest key a cursor carries (a merchant id of 64 characters in UTF-8)."""

_TAG_BYTES = 12
"""96 bits of HMAC: forging one cursor takes about 2**95 guesses, each a request."""
_TAG_CHARS = 16
MAX_CURSOR_CHARS = (MAX_POSITION_BYTES * 4 + 2) // 3 + 1 + _TAG_CHARS
_POSITION_CHARS = MAX_CURSOR_CHARS - 1 - _TAG_CHARS
_CURSOR_PATTERN = rf"^[A-Za-z0-9_-]{{1,{_POSITION_CHARS}}}\.[A-Za-z0-9_-]{{{_TAG_CHARS}}}$"

Cursor = Annotated[
    str,
    pydantic.Field(
        max_length=MAX_CURSOR_CHARS,
        pattern=_CURSOR_PATTERN,
        description="The `next` of the previous page, as it was given (opaque and signed).",
    ),
]
"""A cursor as a query parameter: its shape is checked by the model, its tag by
:meth:`PagingCursors.position`."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PagingCursors:
    """Makes and checks the cursors of every paged list under one server secret."""

    def __init__(self, secret: bytes) -> None:
        # A key of its own: a cursor is never a valid session cookie or CSRF token.
        self._key = hmac.digest(secret, b"posfleet/paging-cursor/v1", hashlib.sha256)

    def _tag(self, scope: str, position: bytes) -> bytes:
        message = scope.encode("ascii") + b"\x00" + position
        return hmac.digest(self._key, message, hashlib.sha256)[:_TAG_BYTES]

    def cursor(self, scope: str, position: str) -> str:
        """The cursor that resumes the list ``scope`` after ``position``."""
        raw = position.encode("utf-8")
        if not 1 <= len(raw) <= MAX_POSITION_BYTES:
            raise ValueError(f"a cursor position is 1 to {MAX_POSITION_BYTES} bytes")
        return f"{_b64(raw)}.{_b64(self._tag(scope, raw))}"

    def id_cursor(self, scope: str, row_id: int) -> str:
        """The cursor after the row ``row_id`` of the list ``scope``."""
        return self.cursor(scope, str(row_id))

    def position(self, scope: str, cursor: str, name: str) -> str:
        """The position ``cursor`` carries; a 400 naming ``name`` if it is not one of ours."""
        refused = InvalidParameterError(
            name,
            f"{name} must be the `next` of a previous page of this list, as it was given",
        )
        encoded, dot, tag = cursor.partition(".")
        if not dot or len(cursor) > MAX_CURSOR_CHARS:
            raise refused
        try:
            raw, given = _unb64(encoded), _unb64(tag)
        except (binascii.Error, ValueError):
            raise refused from None
        if not hmac.compare_digest(given, self._tag(scope, raw)):
            raise refused
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:  # pragma: no cover - only we sign positions
            raise refused from None

    def row_id(self, scope: str, cursor: str | None, name: str) -> int | None:
        """The row id ``cursor`` resumes after (None without a cursor); a 400 otherwise."""
        if cursor is None:
            return None
        text = self.position(scope, cursor, name)
        if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_ROW_ID):
            raise InvalidParameterError(name, f"{name} is not a cursor of this list")
        return int(text)


CURSORS_KEY = web.AppKey("paging_cursors", PagingCursors)
"""The app's cursor signer (set by :func:`posfleet.dashboard.create_app`)."""


def cursors(app: web.Application) -> PagingCursors:
    """The app's cursor signer."""
    return app[CURSORS_KEY]
