"""Messages the centre could not accept, kept for an operator to inspect.

Identical failures (same topic, error and payload) collapse into one row with a count,
so a terminal that repeats a bad message forever cannot fill the database.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import pydantic
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import utcnow
from posfleet.store.schema import dead_letters
from posfleet.store.upsert import insert_for

MAX_TOPIC_CHARS = 256
MAX_PAYLOAD_BYTES_KEPT = 4096
MAX_ERROR_CHARS = 4096


class DeadLetter(pydantic.BaseModel):
    """One kind of rejected message and how often it arrived."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: int
    fingerprint: str
    topic: str
    payload: str
    error: str
    first_seen: datetime
    last_seen: datetime
    count: int


def fingerprint(topic: str, payload: bytes, error: str) -> str:
    """SHA-256 over the full topic, error and payload (before any truncation)."""
    digest = hashlib.sha256()
    for part in (
        topic.encode("utf-8", "backslashreplace"),
        error.encode("utf-8", "backslashreplace"),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    digest.update(payload)
    return digest.hexdigest()


def _storable(text: str) -> str:
    # PostgreSQL text cannot hold NUL, and a bad payload is exactly where one turns up.
    return text.replace("\x00", "\\x00")


def printable_payload(payload: bytes) -> str:
    """The first 4 KiB as text; bytes that are not UTF-8 appear as ``\\xNN`` escapes."""
    text = _storable(payload[:MAX_PAYLOAD_BYTES_KEPT].decode("utf-8", "backslashreplace"))
    if len(payload) > MAX_PAYLOAD_BYTES_KEPT:
        text += f"... [{len(payload)} bytes in all]"
    return text


async def record_dead_letter(
    conn: AsyncConnection,
    topic: str,
    payload: bytes,
    error: str,
    *,
    now: datetime | None = None,
    count: int = 1,
) -> None:
    """Store a rejected message, or count ``count`` more of an identical one."""
    now = now or utcnow()
    stmt = insert_for(conn, dead_letters).values(
        fingerprint=fingerprint(topic, payload, error),
        topic=_storable(topic)[:MAX_TOPIC_CHARS],
        payload=printable_payload(payload),
        error=_storable(error)[:MAX_ERROR_CHARS],
        first_seen=now,
        last_seen=now,
        count=count,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[dead_letters.c.fingerprint],
        set_={"count": dead_letters.c.count + count, "last_seen": stmt.excluded.last_seen},
    )
    await conn.execute(stmt)


async def list_dead_letters(conn: AsyncConnection, limit: int = 100) -> list[DeadLetter]:
    """The most recently seen dead letters first."""
    query = (
        sa.select(dead_letters)
        .order_by(dead_letters.c.last_seen.desc(), dead_letters.c.id.desc())
        .limit(max(1, limit))
    )
    rows = (await conn.execute(query)).all()
    return [DeadLetter.model_validate(dict(row._mapping)) for row in rows]
