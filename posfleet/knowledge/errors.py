"""Errors of the knowledge base package."""

from __future__ import annotations


class KnowledgeError(Exception):
    """Base class of every error raised by :mod:`posfleet.knowledge`."""


class KnowledgeFileError(KnowledgeError):
    """A built-in knowledge file that cannot be used: which file, which line and why."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason
