"""Errors of the serial link between the agent and the terminal hardware."""

from __future__ import annotations


class SerialLinkError(Exception):
    """Base class of every error raised by :mod:`posfleet.agent.serial`."""


class PortOpenError(SerialLinkError):
    """The serial port (device, pty, ``socket://``, ``rfc2217://``) could not be opened."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot open serial port {url}: {reason}")
        self.url = url
        self.reason = reason


class PortClosedError(SerialLinkError):
    """The port went away (device unplugged, peer hung up) or the link was closed."""


class NoAckError(SerialLinkError):
    """The terminal acknowledged none of the sends of a frame."""

    def __init__(self, sends: int, naks: int) -> None:
        super().__init__(
            f"terminal did not acknowledge after {sends} sends ({naks} answered with NAK)"
        )
        self.sends = sends
        self.naks = naks


class ReplyTimeoutError(SerialLinkError):
    """The terminal acknowledged a request but sent no valid reply in time."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"terminal acknowledged the request but sent no reply in {timeout_s} s")
        self.timeout_s = timeout_s


class ApduError(SerialLinkError, ValueError):
    """Bytes that are not a well-formed APDU (length field disagrees with the data)."""


class TlvError(SerialLinkError, ValueError):
    """Bytes that are not well-formed TLV, or a TLV value of the wrong size for its type."""
