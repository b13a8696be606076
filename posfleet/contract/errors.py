"""Errors of the contract package."""

from __future__ import annotations


class ContractError(Exception):
    """Base class of every error raised by :mod:`posfleet.contract`."""


class TopicError(ContractError, ValueError):
    """A topic name or terminal id that is not part of the contract."""
