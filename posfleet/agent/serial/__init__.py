"""The serial link to the terminal hardware: ZVT transport framing, APDUs, TLV, asyncio link.

The codecs (:mod:`frames`, :mod:`apdu`, :mod:`tlv`) are sans-IO; :class:`SerialLink` moves
their bytes over a pyserial port; :class:`FakeLink` stands in for it in unit tests.
"""

from posfleet.agent.serial.apdu import Apdu, failure, success
from posfleet.agent.serial.errors import (
    ApduError,
    NoAckError,
    PortClosedError,
    PortOpenError,
    ReplyTimeoutError,
    SerialLinkError,
    TlvError,
)
from posfleet.agent.serial.fake_link import FakeLink
from posfleet.agent.serial.frames import DecoderEvent, FrameDecoder, encode_frame
from posfleet.agent.serial.link import (
    MAX_SENDS,
    T3_ACK_TIMEOUT_S,
    ConversationLink,
    Link,
    LinkStats,
    SerialLink,
)
from posfleet.agent.serial.port_io import PortSettings
from posfleet.agent.serial.tlv import Tlv, TlvRecord, decode_tlv, encode_tlv

__all__ = [
    "MAX_SENDS",
    "T3_ACK_TIMEOUT_S",
    "Apdu",
    "ApduError",
    "ConversationLink",
    "DecoderEvent",
    "FakeLink",
    "FrameDecoder",
    "Link",
    "LinkStats",
    "NoAckError",
    "PortClosedError",
    "PortOpenError",
    "PortSettings",
    "ReplyTimeoutError",
    "SerialLink",
    "SerialLinkError",
    "Tlv",
    "TlvError",
    "TlvRecord",
    "decode_tlv",
    "encode_frame",
    "encode_tlv",
    "failure",
    "success",
]
