"""Errors of the central store."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error raised by :mod:`posfleet.store`."""


class MigrationError(StoreError):
    """The database schema could not be brought to the requested revision."""

    def __init__(self, url: str, revision: str, reason: str) -> None:
        super().__init__(f"cannot migrate {url} to {revision}: {reason}")
        self.url = url
        self.revision = revision
        self.reason = reason


class ForeignKeyViolationError(StoreError):
    """A schema change left rows whose foreign keys point nowhere (SQLite)."""
