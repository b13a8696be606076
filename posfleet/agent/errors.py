"""Errors of the on-device agent."""

from __future__ import annotations


class AgentError(Exception):
    """Base class of every error raised by :mod:`posfleet.agent` outside the serial link."""


class ConfigError(AgentError):
    """The agent's configuration is invalid; the message says what to change."""


class UplinkError(AgentError):
    """The MQTT uplink failed in a way the agent cannot retry."""


class OutboxError(AgentError):
    """The on-disk outbox could not be opened or written."""
