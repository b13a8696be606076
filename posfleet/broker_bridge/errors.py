"""Errors of the broker bridge."""

from __future__ import annotations


class BridgeError(Exception):
    """Base class of every error raised by :mod:`posfleet.broker_bridge`."""


class NotSubscribedError(BridgeError):
    """The bridge is not (yet) connected and subscribed to the broker."""

    def __init__(self, broker: str, reason: str) -> None:
        super().__init__(f"not subscribed at {broker}: {reason}")
        self.broker = broker
        self.reason = reason


class TransientStoreError(BridgeError):
    """A batch could not be stored for now (the writer restarting, the database away).

    It says nothing about the messages: the ingest sends the batch again after a pause.
    """
